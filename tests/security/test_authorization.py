"""GQL-10: authorization in the business layer; tenancy between practices (SPEC 3)."""

from __future__ import annotations

from tests.conftest import Api, Mailbox, Staff
from tests.helpers import ENABLE, PATIENT, SEND, STRONG_PASSWORD, enabled_patient, pk
from tests.security.support import (
    AUDIT,
    DISABLE,
    SET_CREDENTIALS,
    UPDATE_PATIENT,
    active_patient,
    login,
    table_rows,
)

ONBOARDING = "{ onboarding(filter: {search: \"Quinn\"}) { totalCount edges { node { id } } } }"


async def test_other_practice_reads_nothing(
    api: Api, staff: Staff, other_staff: Staff, mailbox: Mailbox
) -> None:
    """GQL-10: staff of another practice get `null` for a patient fetched by id, see no
    chart in lists, searches or counts, and none of its audit events."""
    pid = await active_patient(api, staff.token, mailbox)
    assert (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]["id"] == pid

    assert (await api.gql(PATIENT, {"id": pid}, other_staff.token))["data"]["patient"] is None
    listing = await api.gql(ONBOARDING, token=other_staff.token)
    assert listing["data"]["onboarding"] == {"totalCount": 0, "edges": []}
    audit = await api.gql(AUDIT, {"pid": pid}, other_staff.token)
    assert audit["data"]["auditEvents"]["edges"] == []
    everything = await api.gql(AUDIT, {}, other_staff.token)
    assert everything["data"]["auditEvents"]["edges"] == []


async def test_other_practice_changes_nothing(
    api: Api, staff: Staff, other_staff: Staff, mailbox: Mailbox
) -> None:
    """GQL-10: every staff mutation on another practice's patient answers NOT_FOUND (never
    FORBIDDEN, which would confirm the id) and writes nothing."""
    pid = await active_patient(api, staff.token, mailbox)
    before = await table_rows("patient")
    links_before = await table_rows("link_token")

    update = await api.gql(UPDATE_PATIENT, {"input": {"id": pid, "email": "thief@evil.example"}}, other_staff.token)
    assert [e["code"] for e in update["data"]["updatePatient"]["userErrors"]] == ["NOT_FOUND"]
    for document, name in ((DISABLE, "disablePortal"), (ENABLE, "enablePortal")):
        result = await api.gql(document, {"ids": [pid]}, other_staff.token)
        row = result["data"][name]["results"][0]
        assert row["patient"] is None and [e["code"] for e in row["userErrors"]] == ["NOT_FOUND"]
    send = await api.gql(SEND, {"ids": [pid], "confirm": True}, other_staff.token)
    row = send["data"]["sendInvitation"]["results"][0]
    assert row["invitation"] is None and [e["code"] for e in row["userErrors"]] == ["NOT_FOUND"]
    creds = await api.gql(SET_CREDENTIALS, {"pid": pid, "u": "taken.over", "p": "attacker-passphrase-1"}, other_staff.token)
    assert [e["code"] for e in creds["data"]["setCredentials"]["userErrors"]] == ["NOT_FOUND"]

    assert await table_rows("patient") == before
    assert await table_rows("link_token") == links_before
    await api.deliver()
    assert mailbox.messages == []
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    assert (await login(api, "taken.over", "attacker-passphrase-1"))["sessionToken"] is None


async def test_business_layer_enforces_tenancy_without_graphql(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    """GQL-10: the onboarding functions themselves scope by the actor's practice, so a new
    resolver that forgets a check still cannot reach another practice's rows."""
    from models import ActorType
    from onboarding.actor import Actor
    from onboarding.credentials import set_credentials
    from onboarding.patients import ChartInput, update_patient
    from onboarding.portal import disable_portal

    pid = pk(await enabled_patient(api, staff.token))
    intruder = Actor(ActorType.STAFF, other_staff.staff_id, other_staff.practice_id, "192.0.2.1", "r1")
    [row] = await disable_portal(intruder, [str(pid)])
    assert [p.code.value for p in row.problems] == ["NOT_FOUND"]
    _, problems = await update_patient(intruder, pid, ChartInput(email="thief@evil.example"))
    assert [p.code.value for p in problems] == ["NOT_FOUND"]
    result = await set_credentials(
        intruder, pid, "taken.over", None, hasher=api.services.hasher, min_length=12
    )
    assert [p.code.value for p in result.problems] == ["NOT_FOUND"]
    [patient] = await table_rows("patient")
    assert patient["portal_enabled"] and patient["email"] == "avery.quinn1@example.com"


async def test_staff_operations_need_a_staff_token(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """GQL-10 (SPEC 4): anonymous callers, patient sessions and unknown or malformed bearer
    tokens get UNAUTHENTICATED for staff operations."""
    pid = await active_patient(api, staff.token, mailbox)
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    for bearer in (None, session, "stf_" + "A" * 43, "garbage", "stf_" + "x" * 500):
        for query, variables in ((PATIENT, {"id": pid}), (ONBOARDING, {}), (AUDIT, {})):
            result = await api.gql(query, variables, bearer)
            assert result["data"] is None or all(v is None for v in result["data"].values())
            assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        send = await api.gql(SEND, {"ids": [pid], "confirm": True}, bearer)
        assert send["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await api.deliver()
    assert mailbox.messages == []
