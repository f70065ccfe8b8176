"""enablePortal / disablePortal: bulk, one result per requested id, in order."""

from __future__ import annotations

from typing import Any

import pytest

from models import AuditEvent, LinkToken, PatientSession
from models import Patient as PatientModel
from tests.conftest import Api, Staff
from tests.helpers import LOGIN, PATIENT, create_patient, enabled_patient, invite, pk

ENABLE = """
mutation($ids: [ID!]!) {
  enablePortal(input: {patientIds: $ids}) {
    results { requestedId patient { id portalEnabled portalStatus } userErrors { field code } }
    userErrors { field code }
  }
}"""

DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) {
    results { requestedId patient { id portalEnabled portalStatus } userErrors { field code } }
    userErrors { field code }
  }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username mustChangePassword } userErrors { field code } }
}"""

CHANGE_PASSWORD = """
mutation($c: String!, $n: String!) {
  changePassword(input: {currentPassword: $c, newPassword: $n}) { ok userErrors { code } }
}"""

TEMP_PASSWORD = "granite-lantern-window-7"
MAX_IDS = 25


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # A small bulk cap keeps the "too many ids" requests small.
    return {"max_bulk_ids": MAX_IDS}


async def enable(api: Api, token: str, ids: list[str]) -> dict[str, Any]:
    result = await api.gql(ENABLE, {"ids": ids}, token)
    assert "errors" not in result, result
    return result["data"]["enablePortal"]


async def disable(api: Api, token: str, ids: list[str]) -> dict[str, Any]:
    result = await api.gql(DISABLE, {"ids": ids}, token)
    assert "errors" not in result, result
    return result["data"]["disablePortal"]


def row_codes(payload: dict[str, Any]) -> list[list[str]]:
    return [[e["code"] for e in r["userErrors"]] for r in payload["results"]]


async def test_enable_portal_enables_each_patient(api: Api, staff: Staff) -> None:
    # given two charts, one with email and one without
    with_email = await create_patient(api, staff.token, n=1)
    without_email = await create_patient(api, staff.token, n=2, email=None)

    # when staff enable both
    payload = await enable(api, staff.token, [with_email, without_email])

    # then each row reports its patient, enabled, with the next step as status
    assert payload["userErrors"] == []
    assert payload["results"] == [
        {
            "requestedId": with_email,
            "patient": {"id": with_email, "portalEnabled": True, "portalStatus": "NOT_INVITED"},
            "userErrors": [],
        },
        {
            "requestedId": without_email,
            "patient": {"id": without_email, "portalEnabled": True, "portalStatus": "NO_EMAIL"},
            "userErrors": [],
        },
    ]
    assert await PatientModel.filter(portal_enabled=True).count() == 2


async def test_enable_portal_is_idempotent(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    payload = await enable(api, staff.token, [pid, pid])
    assert payload["userErrors"] == []
    assert row_codes(payload) == [[], []]
    assert [r["patient"]["portalEnabled"] for r in payload["results"]] == [True, True]
    assert await AuditEvent.filter(action="portal.enabled").count() == 1


async def test_enable_portal_not_found_rows_do_not_fail_the_batch(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    # given one of our patients and one of another practice
    ours = await create_patient(api, staff.token, n=1)
    theirs = await create_patient(api, other_staff.token, n=2)

    # when staff enable a mix of good and bad ids
    ids = ["999999", ours, "abc", theirs, ""]
    payload = await enable(api, staff.token, ids)

    # then one result per id, in order; the bad ones are NOT_FOUND with their index
    assert payload["userErrors"] == []
    assert [r["requestedId"] for r in payload["results"]] == ids
    assert row_codes(payload) == [["NOT_FOUND"], [], ["NOT_FOUND"], ["NOT_FOUND"], ["NOT_FOUND"]]
    assert payload["results"][0]["userErrors"][0]["field"] == ["patientIds", "0"]
    assert payload["results"][3]["userErrors"][0]["field"] == ["patientIds", "3"]
    for i in (0, 2, 3, 4):
        assert payload["results"][i]["patient"] is None
    assert payload["results"][1]["patient"]["portalEnabled"] is True
    # and the other practice's patient is untouched
    assert (await PatientModel.get(id=pk(theirs))).portal_enabled is False


@pytest.mark.parametrize("status", ["INACTIVE", "DECEASED"])
async def test_enable_portal_refuses_inactive_charts(api: Api, staff: Staff, status: str) -> None:
    # given an inactive (or deceased) chart among active ones
    active = await create_patient(api, staff.token, n=1)
    inactive = await create_patient(api, staff.token, n=2, chartStatus=status)
    prospective = await create_patient(api, staff.token, n=3, chartStatus="PROSPECTIVE")

    # when staff enable all three
    payload = await enable(api, staff.token, [active, inactive, prospective])

    # then the inactive one is refused, the others enabled
    assert row_codes(payload) == [[], ["INACTIVE_PATIENT"], []]
    assert payload["results"][1]["userErrors"][0]["field"] == ["patientIds", "1"]
    assert payload["results"][1]["patient"] == {
        "id": inactive,
        "portalEnabled": False,
        "portalStatus": "DISABLED",
    }
    assert (await PatientModel.get(id=pk(inactive))).portal_enabled is False
    assert await PatientModel.filter(portal_enabled=True).count() == 2


async def test_enable_portal_too_many_ids_changes_nothing(api: Api, staff: Staff) -> None:
    # given one id more than a request may carry
    pid = await create_patient(api, staff.token, n=1)
    ids = [pid] + [str(100000 + i) for i in range(MAX_IDS)]

    # when staff send them
    payload = await enable(api, staff.token, ids)

    # then the whole request is refused in the payload, and nothing changed
    assert payload["results"] == []
    assert [e["code"] for e in payload["userErrors"]] == ["INVALID_INPUT"]
    assert payload["userErrors"][0]["field"] == ["patientIds"]
    assert (await PatientModel.get(id=pk(pid))).portal_enabled is False
    assert await AuditEvent.all().count() == 1  # patient.created only


async def test_enable_portal_at_the_limit_is_accepted(api: Api, staff: Staff) -> None:
    pid = await create_patient(api, staff.token, n=1)
    payload = await enable(api, staff.token, [pid] * MAX_IDS)
    assert payload["userErrors"] == []
    assert row_codes(payload) == [[]] * MAX_IDS
    assert (await PatientModel.get(id=pk(pid))).portal_enabled is True


async def test_enable_portal_empty_list_is_empty_result(api: Api, staff: Staff) -> None:
    payload = await enable(api, staff.token, [])
    assert payload == {"results": [], "userErrors": []}


async def test_disable_portal_disables_and_reports_each_row(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    # given enabled patients of ours and one of another practice
    first = await enabled_patient(api, staff.token, n=1)
    second = await enabled_patient(api, staff.token, n=2)
    theirs = await enabled_patient(api, other_staff.token, n=3)

    # when staff disable a mix
    ids = [first, "abc", theirs, second, "0"]
    payload = await disable(api, staff.token, ids)

    # then one row per id, in order
    assert payload["userErrors"] == []
    assert [r["requestedId"] for r in payload["results"]] == ids
    assert row_codes(payload) == [[], ["NOT_FOUND"], ["NOT_FOUND"], [], ["NOT_FOUND"]]
    assert payload["results"][0]["patient"] == {
        "id": first,
        "portalEnabled": False,
        "portalStatus": "DISABLED",
    }
    assert payload["results"][2]["patient"] is None
    assert (
        await PatientModel.filter(practice_id=staff.practice_id, portal_enabled=True).count() == 0
    )
    assert (await PatientModel.get(id=pk(theirs))).portal_enabled is True


async def test_disable_portal_of_inactive_chart_is_allowed(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    await PatientModel.filter(id=pk(pid)).update(chart_status="INACTIVE")
    payload = await disable(api, staff.token, [pid])
    assert row_codes(payload) == [[]]
    assert payload["results"][0]["patient"]["portalEnabled"] is False


async def test_disable_portal_too_many_ids_changes_nothing(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    ids = [pid] * (MAX_IDS + 1)
    payload = await disable(api, staff.token, ids)
    assert payload["results"] == []
    assert [e["code"] for e in payload["userErrors"]] == ["INVALID_INPUT"]
    assert (await PatientModel.get(id=pk(pid))).portal_enabled is True
    assert await AuditEvent.filter(action="portal.disabled").count() == 0


async def test_disable_portal_revokes_links(api: Api, staff: Staff) -> None:
    # given an invited patient
    pid = await enabled_patient(api, staff.token, n=1)
    assert (await invite(api, staff.token, pid))["userErrors"] == []

    # when staff disable portal access
    payload = await disable(api, staff.token, [pid])

    # then the link is revoked; enabling again does not revive it
    assert row_codes(payload) == [[]]
    link = await LinkToken.get(patient_id=pk(pid))
    assert link.revoked_at is not None
    assert link.revoke_reason == "portal_disabled"
    assert row_codes(await enable(api, staff.token, [pid])) == [[]]
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert patient["portalStatus"] == "INVITATION_EXPIRED"
    assert patient["lastInvitation"]["revokedAt"] is not None


async def test_disable_portal_revokes_patient_sessions(api: Api, staff: Staff) -> None:
    # given a patient logged in with a staff-set password
    pid = await enabled_patient(api, staff.token, n=1, email=None)
    creds = await api.gql(
        SET_CREDENTIALS,
        {"input": {"patientId": pid, "username": "avery.q", "password": TEMP_PASSWORD}},
        staff.token,
    )
    assert creds["data"]["setCredentials"]["userErrors"] == []
    login = (await api.gql(LOGIN, {"u": "avery.q", "p": TEMP_PASSWORD}))["data"]["login"]
    assert login["userErrors"] == []
    session = login["sessionToken"]
    assert await PatientSession.filter(revoked_at__isnull=True).count() == 1

    # when staff disable portal access
    payload = await disable(api, staff.token, [pid])

    # then the session is revoked and no longer works
    assert row_codes(payload) == [[]]
    assert await PatientSession.filter(revoked_at__isnull=True).count() == 0
    result = await api.gql(
        CHANGE_PASSWORD, {"c": TEMP_PASSWORD, "n": "another-strong-phrase-9"}, session
    )
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_disable_portal_already_disabled_is_a_quiet_success(api: Api, staff: Staff) -> None:
    pid = await create_patient(api, staff.token, n=1)
    payload = await disable(api, staff.token, [pid])
    assert row_codes(payload) == [[]]
    assert payload["results"][0]["patient"]["portalStatus"] == "DISABLED"
    assert await AuditEvent.filter(action="portal.disabled").count() == 0
