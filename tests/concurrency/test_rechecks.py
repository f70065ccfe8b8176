"""Decisions taken before a slow step are taken again under the lock that writes.

Found by a review (stop 29): each test pauses one request after its slow part (the
hash, or the filter read before the lock) while another request commits the change
that should decide it, and checks the answer a serial order would give. Each fails
with its re-check removed (tests/concurrency/revert_check.py, entries R1-R4)."""

from __future__ import annotations

import asyncio
from typing import Any

from models import LinkToken, PortalAccount
from tests.concurrency.pause import paused_at
from tests.concurrency.test_races import (
    ATTACKER,
    DOB,
    EMAIL,
    RESET,
    TEMPORARY,
    USERNAME,
    active_patient,
    change,
    disable,
    login,
    redeem,
    reset_link,
    staff_sets,
    status,
    update,
)
from tests.conftest import Api, Mailbox, Staff
from tests.helpers import STRONG_PASSWORD, enabled_patient, pk
from tests.security.support import SET_CREDENTIALS, TOKEN_INFO

SEND = """
mutation($input: SendInvitationInput!) {
  sendInvitation(input: $input) {
    results { requestedId invitation { sentTo } userErrors { code } }
    userErrors { code message }
  }
}"""
ENABLE = """
mutation($input: EnablePortalInput!) {
  enablePortal(input: $input) { results { requestedId userErrors { code } } userErrors { code } }
}"""


def codes(errors: list[dict[str, Any]]) -> list[str]:
    return [e["code"] for e in errors]


async def rename(api: Api, staff: Staff, pid: str, username: str) -> None:
    result = await api.gql(SET_CREDENTIALS, {"pid": pid, "u": username, "p": None}, staff.token)
    assert result["data"]["setCredentials"]["userErrors"] == [], result


async def test_r1_a_reset_link_asks_the_date_of_birth_once_the_account_is_in_use(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given staff-set credentials never used, and a reset link that asks no date of birth
    pid = await enabled_patient(api, staff.token, n=1)
    await staff_sets(api, staff, pid)
    await api.deliver()
    mailbox.clear()
    token = await reset_link(api, staff, mailbox, pid)
    info = (await api.gql(TOKEN_INFO, {"t": token}))["data"]["tokenInfo"]
    assert info["dateOfBirthRequired"] is False
    # when a redemption without the date is held after hashing while the patient logs in
    async with paused_at("redeem.hashed") as pause:
        attack = asyncio.create_task(redeem(api, token, ATTACKER, dob=None))
        await pause.reached()
        assert (await login(api, TEMPORARY))["sessionToken"]
        pause.release()
        result = await attack
    # then the account in use is not reset without the date of birth (SPEC 7.1)
    assert codes(result["userErrors"]) == ["DATE_OF_BIRTH_MISMATCH"], result
    assert (await login(api, ATTACKER))["sessionToken"] is None
    assert (await login(api, TEMPORARY))["sessionToken"]
    # and the link is still there for the patient who knows the date
    assert (await redeem(api, token, RESET, dob=DOB))["userErrors"] == []


async def test_r2_a_redeemed_password_is_judged_on_the_username_now_on_file(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    token = await reset_link(api, staff, mailbox, pid)
    async with paused_at("redeem.hashed") as pause:
        racing = asyncio.create_task(redeem(api, token, RESET, dob=DOB))
        await pause.reached()
        await rename(api, staff, pid, RESET)  # the new password is now the username
        pause.release()
        result = await racing
    assert codes(result["userErrors"]) == ["PASSWORD_TOO_WEAK"], result
    assert (await login(api, RESET, username=RESET))["sessionToken"] is None
    # nothing was written: the link is still usable
    assert (await redeem(api, token, ATTACKER, dob=DOB))["userErrors"] == []


async def test_r2_a_changed_password_is_judged_on_the_username_now_on_file(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    session = (await login(api, STRONG_PASSWORD))["sessionToken"]
    async with paused_at("change_password.hashed") as pause:
        racing = asyncio.create_task(change(api, session, STRONG_PASSWORD, RESET))
        await pause.reached()
        await rename(api, staff, pid, RESET)
        pause.release()
        result = (await racing)["data"]["changePassword"]
    assert result["ok"] is False
    assert codes(result["userErrors"]) == ["PASSWORD_TOO_WEAK"], result
    assert (await login(api, STRONG_PASSWORD, username=RESET))["sessionToken"]


async def test_r2_a_staff_typed_password_is_judged_on_the_address_now_on_file(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    new = "kettle.maple@example.org"
    async with paused_at("set_credentials.hashed") as pause:
        racing = asyncio.create_task(
            api.gql(SET_CREDENTIALS, {"pid": pid, "u": USERNAME, "p": "zz-" + new}, staff.token)
        )
        await pause.reached()
        await update(api, staff, pid, email=new)
        pause.release()
        result = (await racing)["data"]["setCredentials"]
    assert codes(result["userErrors"]) == ["PASSWORD_TOO_WEAK"], result
    assert await PortalAccount.filter(patient_id=pk(pid)).count() == 0


async def test_r3_invite_by_status_filter_leaves_out_a_patient_given_credentials_meanwhile(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    other = await enabled_patient(api, staff.token, n=2)
    async with paused_at("invite.before_lock") as pause:
        sending = asyncio.create_task(
            api.gql(SEND, {"input": {"filter": {"status": ["NOT_INVITED"]}}}, staff.token)
        )
        await pause.reached()
        # staff set credentials by hand (the address is not the patient's to use)
        await staff_sets(api, staff, pid)
        assert (await status(api, staff, pid))["portalStatus"] == "CREDENTIALS_ISSUED"
        pause.release()
        answer = (await sending)["data"]["sendInvitation"]
    # then only the patient still NOT_INVITED is invited, as if the filter read came after
    assert [r["requestedId"] for r in answer["results"]] == [other], answer
    assert answer["results"][0]["invitation"] is not None
    assert await LinkToken.filter(patient_id=pk(pid)).count() == 0
    await api.deliver()
    # the patient hears only of the password staff set, not of a reset link as well
    assert ["Reset" in str(m["Subject"]) for m in mailbox.to(EMAIL)] == [False]


async def test_r3_enable_by_filter_leaves_out_a_patient_enabled_meanwhile(
    api: Api, staff: Staff
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    other = await enabled_patient(api, staff.token, n=2)
    await disable(api, staff, pid)
    await disable(api, staff, other)
    async with paused_at("enable.before_lock", hold=1) as pause:
        enabling = asyncio.create_task(
            api.gql(ENABLE, {"input": {"filter": {"status": ["DISABLED"]}}}, staff.token)
        )
        await pause.reached()
        enabled = await api.gql(ENABLE, {"input": {"patientIds": [pid]}}, staff.token)
        assert enabled["data"]["enablePortal"]["userErrors"] == []
        pause.release()
        answer = (await enabling)["data"]["enablePortal"]
    # the filter no longer selects the patient enabled meanwhile: one row, the other's
    assert [r["requestedId"] for r in answer["results"]] == [other], answer


async def test_r4_a_key_taken_by_a_different_request_meanwhile_is_refused(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    one = await enabled_patient(api, staff.token, n=1)
    two = await enabled_patient(api, staff.token, n=2)
    async with paused_at("invite.before_lock", hold=1) as pause:
        first = asyncio.create_task(
            api.gql(SEND, {"input": {"patientIds": [one], "idempotencyKey": "k1"}}, staff.token)
        )
        await pause.reached()
        second = await api.gql(
            SEND, {"input": {"patientIds": [two], "idempotencyKey": "k1"}}, staff.token
        )
        assert second["data"]["sendInvitation"]["userErrors"] == []
        pause.release()
        held = (await first)["data"]["sendInvitation"]
    # as the same request is refused when it comes second, not an empty success
    assert held["results"] == []
    assert codes(held["userErrors"]) == ["INVALID_INPUT"], held
    assert "different request" in held["userErrors"][0]["message"]
    assert await LinkToken.filter(patient_id=pk(one)).count() == 0
