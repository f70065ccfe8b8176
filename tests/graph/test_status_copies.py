"""The status reads copies of the account's and the newest link's state that database
triggers keep on ``patient`` (migration 0006). After every kind of write that can move a
patient between statuses, through the real workflows, the status the service reports
must equal the one computed independently from the accounts and links themselves."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import time_machine

from core.clock import utcnow
from tests.conftest import Api, Mailbox, Staff, token_from
from tests.graph.test_onboarding_list import ONBOARDING, charts_of
from tests.helpers import ENABLE, STRONG_PASSWORD, enabled_patient, invite, pk
from tests.security.support import (
    CHANGE_PASSWORD,
    DISABLE,
    SET_CREDENTIALS,
    UPDATE_PATIENT,
    active_patient,
    invited,
    login,
    redeem,
)

STAFF_PASSWORD = "temporary-passphrase-31"
SEND_TWO = """
mutation($ids: [ID!]!) {
  sendInvitation(input: {patientIds: $ids, confirmSharedEmail: true}) {
    results { userErrors { code } }
  }
}"""


async def reported(api: Api, staff: Staff) -> dict[int, str]:
    data = (await api.gql(ONBOARDING, {"first": 200}, staff.token))["data"]["onboarding"]
    counted = {c["status"]: c["count"] for c in data["statusCounts"]}
    statuses = {pk(e["node"]["id"]): e["node"]["portalStatus"] for e in data["edges"]}
    # the grouped counts read the same copies as the rows
    assert {s: n for s, n in counted.items() if n} == {
        s: list(statuses.values()).count(s) for s in set(statuses.values())
    }
    return statuses


async def assert_copies_agree(api: Api, staff: Staff, expected: dict[int, str]) -> None:
    independent = {c.id: c.status for c in await charts_of(staff.practice_id)}
    assert await reported(api, staff) == independent
    for pid, status in expected.items():
        assert independent[pid] == status, (pid, independent[pid], status)


async def test_every_transition_keeps_the_copies_right(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # a patient who redeemed a link, one with a staff-set password, one invited, one whose
    # mail bounced, one not invited yet
    redeemed = pk(await active_patient(api, staff.token, mailbox, n=1, username="patient1"))
    staff_set = pk(await enabled_patient(api, staff.token, n=2))
    result = await api.gql(
        SET_CREDENTIALS, {"pid": str(staff_set), "u": "patient2", "p": STAFF_PASSWORD}, staff.token
    )
    assert result["data"]["setCredentials"]["userErrors"] == []
    pid3, _ = await invited(api, staff.token, mailbox, n=3)
    bounced = pk(await enabled_patient(api, staff.token, n=4))
    mailbox.refuse["avery.quinn4@example.com"] = "550 5.1.1 no such user"
    assert (await invite(api, staff.token, str(bounced)))["userErrors"] == []
    await api.deliver()
    fresh = pk(await enabled_patient(api, staff.token, n=5))
    outstanding = pk(pid3)
    await assert_copies_agree(
        api,
        staff,
        {
            redeemed: "ACTIVE",
            staff_set: "CREDENTIALS_ISSUED",
            outstanding: "INVITED",
            bounced: "INVITATION_EXPIRED",
            fresh: "NOT_INVITED",
        },
    )

    # the staff-set password is used to log in, then changed by its owner
    first = await login(api, "patient2", STAFF_PASSWORD)
    assert first["sessionToken"]
    await assert_copies_agree(api, staff, {staff_set: "ACTIVE"})
    changed = await api.gql(
        CHANGE_PASSWORD, {"c": STAFF_PASSWORD, "n": "my-own-passphrase-2024"}, first["sessionToken"]
    )
    assert changed["data"]["changePassword"]["ok"] is True
    await assert_copies_agree(api, staff, {staff_set: "ACTIVE"})

    # the outstanding link dies with an email change; a new invitation supersedes it
    await api.gql(
        UPDATE_PATIENT,
        {"input": {"id": str(outstanding), "email": "new3@example.com"}},
        staff.token,
    )
    await assert_copies_agree(api, staff, {outstanding: "INVITATION_EXPIRED"})
    assert (await invite(api, staff.token, str(outstanding)))["userErrors"] == []
    await assert_copies_agree(api, staff, {outstanding: "INVITED"})

    # it expires with time
    with time_machine.travel(utcnow() + timedelta(days=30), tick=False):
        await assert_copies_agree(api, staff, {outstanding: "INVITATION_EXPIRED"})

    # disabling and enabling again: the revoked link leaves INVITATION_EXPIRED
    await api.gql(DISABLE, {"ids": [str(outstanding)]}, staff.token)
    await assert_copies_agree(api, staff, {outstanding: "DISABLED"})
    enabled = await api.gql(ENABLE, {"ids": [str(outstanding)]}, staff.token)
    assert enabled["data"]["enablePortal"]["results"][0]["userErrors"] == []
    await assert_copies_agree(api, staff, {outstanding: "INVITATION_EXPIRED"})

    # a fresh invitation redeemed: ACTIVE
    assert (await invite(api, staff.token, str(fresh)))["userErrors"] == []
    await api.deliver()
    [message] = mailbox.to("avery.quinn5@example.com")
    assert (await redeem(api, token_from(message), "patient5", STRONG_PASSWORD))["userErrors"] == []
    await assert_copies_agree(api, staff, {fresh: "ACTIVE", redeemed: "ACTIVE"})


async def test_concurrent_writes_to_one_patient_neither_deadlock_nor_drift(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """Triggers write the patient row when its links or account change, so every such
    transaction locks the patient first. Redemption, re-invitations, a staff-set password,
    an email change and a disable racing on one patient must all answer (no fault, no
    deadlock) and leave the copies right. A smoke test: which interleaving happens is up
    to the scheduler, so it does not prove the lock order (onboarding.unit_of_work
    argues it); it catches drift and faults under a realistic race."""
    pid, token = await invited(api, staff.token, mailbox, n=1)
    other = pk(await enabled_patient(api, staff.token, n=2))
    calls = [
        redeem(api, token, "racer1", STRONG_PASSWORD),
        api.gql(SEND_TWO, {"ids": [pid, str(other)]}, staff.token),
        api.gql(SEND_TWO, {"ids": [str(other), pid]}, staff.token),
        api.gql(SET_CREDENTIALS, {"pid": pid, "u": "racer2", "p": STAFF_PASSWORD}, staff.token),
        api.gql(UPDATE_PATIENT, {"input": {"id": pid, "email": "moved@example.com"}}, staff.token),
        api.gql(DISABLE, {"ids": [str(other)]}, staff.token),
    ]
    answers = await asyncio.gather(*calls)
    for answer in answers:
        assert "errors" not in answer, answer
    await api.deliver()
    await assert_copies_agree(api, staff, {})
