"""login and changePassword (SPEC section 3 "Passwords", 4, 7.6, 7.7): sessions, one
answer for every failed login, lock-out, staff-set passwords that must be changed and
expire, and the notice that follows a change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import time_machine
from tortoise import connections

from core.clock import utcnow
from models import AuditEvent, PatientSession
from tests.conftest import BACKEND, Api, Mailbox, Staff, body_text, token_from
from tests.helpers import (
    PATIENT,
    REDEEM,
    STRONG_PASSWORD,
    enabled_patient,
    invite,
    pk,
)

EMAIL = "avery.quinn1@example.com"
USERNAME = "avery.q"
TEMPORARY = "staff-typed-start-77"
NEW_PASSWORD = "copper-lantern-meadow-17"

LOGIN = """
mutation($u: String!, $p: String!) {
  login(input: {username: $u, password: $p}) {
    sessionToken mustChangePassword userErrors { field code message }
  }
}"""

CHANGE_PASSWORD = """
mutation($input: ChangePasswordInput!) {
  changePassword(input: $input) { ok sessionToken userErrors { field code } }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username mustChangePassword } userErrors { field code } }
}"""

DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) { results { userErrors { code } } }
}"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Many attempts from one address per test; the lock-out is the subject, not the
    # per-address rate limit.
    return {"rate_limit_login": "1000/minute"}


async def post_login(api: Api, username: str, password: str) -> httpx.Response:
    return await api.client.post(
        "/graphql", json={"query": LOGIN, "variables": {"u": username, "p": password}}
    )


async def login(api: Api, username: str, password: str) -> dict[str, Any]:
    result = await api.gql(LOGIN, {"u": username, "p": password})
    assert "errors" not in result, result
    return result["data"]["login"]


async def change(api: Api, session: str | None, current: str, new: str) -> dict[str, Any]:
    return await api.gql(
        CHANGE_PASSWORD, {"input": {"currentPassword": current, "newPassword": new}}, session
    )


async def patient(api: Api, staff: Staff, pid: str) -> dict[str, Any]:
    return (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]


async def active_patient(api: Api, staff: Staff, mailbox: Mailbox, n: int = 1) -> str:
    """A patient who chose USERNAME (suffixed for n > 1) and STRONG_PASSWORD by a link."""
    pid = await enabled_patient(api, staff.token, n=n)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    [message] = mailbox.to(f"avery.quinn{n}@example.com")
    username = USERNAME if n == 1 else f"{USERNAME}{n}"
    result = await api.gql(
        REDEEM,
        {
            "input": {
                "token": token_from(message),
                "username": username,
                "password": STRONG_PASSWORD,
            }
        },
    )
    assert result["data"]["redeemToken"]["userErrors"] == []
    await api.deliver()
    mailbox.clear()
    return pid


async def staff_set_password(api: Api, staff: Staff, username: str = USERNAME, **chart: Any) -> str:
    pid = await enabled_patient(api, staff.token, **chart)
    result = await api.gql(
        SET_CREDENTIALS,
        {"input": {"patientId": pid, "username": username, "password": TEMPORARY}},
        staff.token,
    )
    assert result["data"]["setCredentials"]["userErrors"] == []
    return pid


def unauthenticated(result: dict[str, Any]) -> bool:
    return result.get("data") is None and [e["extensions"]["code"] for e in result["errors"]] == [
        "UNAUTHENTICATED"
    ]


# --- success -------------------------------------------------------------------------


async def test_login_returns_a_session(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await active_patient(api, staff, mailbox)

    result = await login(api, "  Avery.Q ", STRONG_PASSWORD)

    assert result["userErrors"] == []
    assert result["mustChangePassword"] is False
    session = result["sessionToken"]
    assert session.startswith("ses_") and len(session) >= 40
    stored = await PatientSession.get()
    assert stored.token_digest != session and session not in stored.token_digest
    account = (await patient(api, staff, pid))["account"]
    assert account["lastLoginAt"] is not None
    assert account["locked"] is False
    assert await AuditEvent.filter(action="login.succeeded", patient_id=pk(pid)).count() == 1


@pytest.mark.skipif(BACKEND != "postgres", reason="asyncpg's statement cache: PostgreSQL")
async def test_logins_go_on_after_a_column_is_added_while_the_server_runs(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """A migration of a later release adds columns while this one still serves (a
    rolling deploy). The login reads the patient and the account inside its transaction,
    from statements asyncpg has cached on the connection: a ``SELECT *`` would then fail
    there (InvalidCachedStatementError, which asyncpg retries only outside a
    transaction), on every pooled connection in turn. The pool hands back the connection
    it last took (LIFO), so the logins below reuse the one whose cache the first filled."""
    await active_patient(api, staff, mailbox)
    assert (await login(api, USERNAME, STRONG_PASSWORD))["sessionToken"]
    conn = connections.get("default")
    added = ("patient", "portal_account")
    for table in added:
        await conn.execute_script(f"ALTER TABLE {table} ADD COLUMN rollout_probe INT")
    try:
        for _ in range(3):
            result = await login(api, USERNAME, STRONG_PASSWORD)
            assert result["userErrors"] == [] and result["sessionToken"], result
    finally:
        for table in added:
            await conn.execute_script(f"ALTER TABLE {table} DROP COLUMN rollout_probe")


# --- one answer for every failure ----------------------------------------------------


async def test_every_failed_login_answers_the_same(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given an active account, a locked one, one without password and a disabled one
    await active_patient(api, staff, mailbox, n=1)
    await active_patient(api, staff, mailbox, n=2)
    for _ in range(api.settings.lockout_threshold):
        await login(api, f"{USERNAME}2", "not-the-password-at-all")
    no_password = await enabled_patient(api, staff.token, n=3)
    await api.gql(
        SET_CREDENTIALS, {"input": {"patientId": no_password, "username": "nopass"}}, staff.token
    )
    disabled = await active_patient(api, staff, mailbox, n=4)
    await api.gql(DISABLE, {"ids": [disabled]}, staff.token)

    # when each is tried
    responses = {
        "wrong password": await post_login(api, USERNAME, "not-the-password-at-all"),
        "unknown user": await post_login(api, "nobody.here", STRONG_PASSWORD),
        "locked account, right password": await post_login(api, f"{USERNAME}2", STRONG_PASSWORD),
        "account without password": await post_login(api, "nopass", STRONG_PASSWORD),
        "portal disabled": await post_login(api, f"{USERNAME}4", STRONG_PASSWORD),
        "empty password": await post_login(api, USERNAME, ""),
        "oversized password": await post_login(api, USERNAME, "p" * 10_000),
        "oversized username": await post_login(api, "u" * 10_000, STRONG_PASSWORD),
    }

    # then every answer is the same INVALID_CREDENTIALS payload, byte for byte
    reference = responses["wrong password"]
    assert reference.status_code == 200
    assert reference.json() == {
        "data": {
            "login": {
                "sessionToken": None,
                "mustChangePassword": False,
                "userErrors": [
                    {
                        "field": None,
                        "code": "INVALID_CREDENTIALS",
                        "message": reference.json()["data"]["login"]["userErrors"][0]["message"],
                    }
                ],
            }
        }
    }
    for name, response in responses.items():
        assert response.status_code == reference.status_code, name
        assert response.content == reference.content, name
        assert set(response.headers.keys()) == set(reference.headers.keys()), name
    assert await PatientSession.all().count() == 0


# --- lock-out ------------------------------------------------------------------------


async def test_lock_out_after_repeated_failures(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await active_patient(api, staff, mailbox)
    threshold = api.settings.lockout_threshold
    assert threshold == 5

    # when the password is wrong threshold times
    for _ in range(threshold):
        result = await login(api, USERNAME, "not-the-password-at-all")
        assert [e["code"] for e in result["userErrors"]] == ["INVALID_CREDENTIALS"]

    # then the account is locked: staff see it, and even the right password fails
    assert (await patient(api, staff, pid))["account"]["locked"] is True
    locked = await login(api, USERNAME, STRONG_PASSWORD)
    assert locked["sessionToken"] is None
    assert [e["code"] for e in locked["userErrors"]] == ["INVALID_CREDENTIALS"]
    assert await AuditEvent.filter(action="login.locked_out", patient_id=pk(pid)).count() == 1

    # until lockout_minutes have passed
    almost = utcnow() + timedelta(minutes=api.settings.lockout_minutes - 1)
    with time_machine.travel(almost, tick=False):
        still = await login(api, USERNAME, STRONG_PASSWORD)
        assert [e["code"] for e in still["userErrors"]] == ["INVALID_CREDENTIALS"]
    later = utcnow() + timedelta(minutes=api.settings.lockout_minutes, seconds=30)
    with time_machine.travel(later, tick=False):
        assert (await patient(api, staff, pid))["account"]["locked"] is False
        ok = await login(api, USERNAME, STRONG_PASSWORD)
        assert ok["userErrors"] == []
        assert ok["sessionToken"].startswith("ses_")


async def test_failures_below_the_threshold_are_forgotten_after_a_success(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    threshold = api.settings.lockout_threshold

    for _ in range(threshold - 1):
        await login(api, USERNAME, "not-the-password-at-all")
    assert (await login(api, USERNAME, STRONG_PASSWORD))["userErrors"] == []
    for _ in range(threshold - 1):
        await login(api, USERNAME, "not-the-password-at-all")

    assert (await patient(api, staff, pid))["account"]["locked"] is False
    assert (await login(api, USERNAME, STRONG_PASSWORD))["userErrors"] == []


@pytest.mark.parametrize(
    "settings_overrides",
    [{"lockout_threshold": 2, "lockout_minutes": 3, "rate_limit_login": "1000/minute"}],
)
async def test_lock_out_threshold_and_duration_are_configurable(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)

    await login(api, USERNAME, "not-the-password-at-all")
    assert (await patient(api, staff, pid))["account"]["locked"] is False
    await login(api, USERNAME, "not-the-password-at-all")
    assert (await patient(api, staff, pid))["account"]["locked"] is True

    with time_machine.travel(utcnow() + timedelta(minutes=3, seconds=1), tick=False):
        assert (await login(api, USERNAME, STRONG_PASSWORD))["userErrors"] == []


async def test_staff_set_password_clears_a_lock_out(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    for _ in range(api.settings.lockout_threshold):
        await login(api, USERNAME, "not-the-password-at-all")
    assert (await patient(api, staff, pid))["account"]["locked"] is True

    result = await api.gql(
        SET_CREDENTIALS,
        {"input": {"patientId": pid, "username": USERNAME, "password": TEMPORARY}},
        staff.token,
    )

    assert result["data"]["setCredentials"]["userErrors"] == []
    assert (await patient(api, staff, pid))["account"]["locked"] is False
    assert (await login(api, USERNAME, TEMPORARY))["userErrors"] == []


# --- staff-set (temporary) passwords ---------------------------------------------------


async def test_staff_set_password_must_be_changed_at_first_login(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given staff typed a password
    pid = await staff_set_password(api, staff)
    assert (await patient(api, staff, pid))["portalStatus"] == "CREDENTIALS_ISSUED"

    # when the patient logs in with it
    first = await login(api, USERNAME, TEMPORARY)

    # then the session must change the password
    assert first["userErrors"] == []
    assert first["mustChangePassword"] is True
    session = first["sessionToken"]
    assert (await patient(api, staff, pid))["account"]["mustChangePassword"] is True

    # and it can, with that session as the bearer
    changed = await change(api, session, TEMPORARY, NEW_PASSWORD)
    assert changed["data"]["changePassword"]["ok"] is True
    assert changed["data"]["changePassword"]["userErrors"] == []
    fresh = changed["data"]["changePassword"]["sessionToken"]
    assert fresh.startswith("ses_") and fresh != session

    # then the patient is active, and the old password is gone
    details = await patient(api, staff, pid)
    assert details["portalStatus"] == "ACTIVE"
    assert details["account"]["mustChangePassword"] is False
    assert [e["code"] for e in (await login(api, USERNAME, TEMPORARY))["userErrors"]] == [
        "INVALID_CREDENTIALS"
    ]
    again = await login(api, USERNAME, NEW_PASSWORD)
    assert (again["userErrors"], again["mustChangePassword"]) == ([], False)
    # the fresh session from changePassword works for another change
    second = await change(api, fresh, NEW_PASSWORD, "granite-orchard-winter-05")
    assert second["data"]["changePassword"]["ok"] is True


async def test_temporary_password_expires_unused(api: Api, staff: Staff) -> None:
    # given staff set a password for a patient with and one without email
    with_email = await staff_set_password(api, staff, n=1)
    no_email = await staff_set_password(api, staff, "no.mail", n=2, email=None)

    # just before 7 days the credentials still stand (read through the status: a login
    # here would count as use and stop the clock)
    ttl = api.settings.temporary_password_ttl_days
    assert ttl == 7
    with time_machine.travel(utcnow() + timedelta(days=ttl, minutes=-5), tick=False):
        assert (await patient(api, staff, with_email))["portalStatus"] == "CREDENTIALS_ISSUED"

    # when 7 days pass unused
    with time_machine.travel(utcnow() + timedelta(days=ttl, minutes=5), tick=False):
        # then it no longer works, answering like any wrong password
        for username in (USERNAME, "no.mail"):
            result = await login(api, username, TEMPORARY)
            assert result["sessionToken"] is None
            assert [e["code"] for e in result["userErrors"]] == ["INVALID_CREDENTIALS"]
        # and the status falls back to the next step
        assert (await patient(api, staff, with_email))["portalStatus"] == "NOT_INVITED"
        assert (await patient(api, staff, no_email))["portalStatus"] == "NO_EMAIL"


async def test_used_temporary_password_does_not_expire(api: Api, staff: Staff) -> None:
    await staff_set_password(api, staff)
    assert (await login(api, USERNAME, TEMPORARY))["userErrors"] == []

    with time_machine.travel(utcnow() + timedelta(days=30), tick=False):
        result = await login(api, USERNAME, TEMPORARY)
        assert result["userErrors"] == []
        assert result["mustChangePassword"] is True


# --- changePassword ------------------------------------------------------------------


async def test_change_password_revokes_other_sessions_and_sends_a_notice(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given the patient is signed in on two devices
    await active_patient(api, staff, mailbox)
    phone = (await login(api, USERNAME, STRONG_PASSWORD))["sessionToken"]
    laptop = (await login(api, USERNAME, STRONG_PASSWORD))["sessionToken"]

    # when the password is changed on the phone
    result = await change(api, phone, STRONG_PASSWORD, NEW_PASSWORD)
    await api.deliver()

    # then it worked and a fresh session replaces every earlier one
    payload = result["data"]["changePassword"]
    assert (payload["ok"], payload["userErrors"]) == (True, [])
    fresh = payload["sessionToken"]
    assert unauthenticated(await change(api, laptop, NEW_PASSWORD, "granite-orchard-winter-05"))
    assert unauthenticated(await change(api, phone, NEW_PASSWORD, "granite-orchard-winter-05"))
    assert await PatientSession.filter(revoked_at=None).count() == 1
    # and the patient is told, without the password
    [notice] = mailbox.to(EMAIL)
    assert notice["Subject"] == "Your Maple Street Clinic patient portal password was changed"
    assert "If this wasn't you, call Maple Street Clinic" in body_text(notice)
    assert NEW_PASSWORD not in notice.as_string()
    assert STRONG_PASSWORD not in notice.as_string()
    # and the fresh session is a working one
    again = await change(api, fresh, NEW_PASSWORD, "granite-orchard-winter-05")
    assert again["data"]["changePassword"]["ok"] is True


async def test_change_password_without_a_session_is_unauthenticated(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await active_patient(api, staff, mailbox)

    anonymous = await change(api, None, STRONG_PASSWORD, NEW_PASSWORD)
    with_staff_token = await change(api, staff.token, STRONG_PASSWORD, NEW_PASSWORD)
    made_up = await change(api, "ses_" + "A" * 43, STRONG_PASSWORD, NEW_PASSWORD)

    assert unauthenticated(anonymous)
    assert unauthenticated(with_staff_token)
    assert unauthenticated(made_up)
    assert (await login(api, USERNAME, STRONG_PASSWORD))["userErrors"] == []


async def test_expired_session_is_unauthenticated(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    await active_patient(api, staff, mailbox)
    session = (await login(api, USERNAME, STRONG_PASSWORD))["sessionToken"]

    minutes = api.settings.session_ttl_minutes
    with time_machine.travel(utcnow() + timedelta(minutes=minutes, seconds=1), tick=False):
        assert unauthenticated(await change(api, session, STRONG_PASSWORD, NEW_PASSWORD))


async def test_change_password_refusals(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    await active_patient(api, staff, mailbox)
    session = (await login(api, USERNAME, STRONG_PASSWORD))["sessionToken"]

    wrong = await change(api, session, "not-the-password-at-all", NEW_PASSWORD)
    weak = await change(api, session, STRONG_PASSWORD, "short")
    same = await change(api, session, STRONG_PASSWORD, STRONG_PASSWORD)

    assert wrong["data"]["changePassword"] == {
        "ok": False,
        "sessionToken": None,
        "userErrors": [{"field": ["currentPassword"], "code": "INVALID_CREDENTIALS"}],
    }
    for result in (weak, same):
        assert result["data"]["changePassword"] == {
            "ok": False,
            "sessionToken": None,
            "userErrors": [{"field": ["newPassword"], "code": "PASSWORD_TOO_WEAK"}],
        }
    # the refusals changed nothing: the password and the session still work
    assert (await login(api, USERNAME, STRONG_PASSWORD))["userErrors"] == []
    ok = await change(api, session, STRONG_PASSWORD, NEW_PASSWORD)
    assert ok["data"]["changePassword"]["ok"] is True
