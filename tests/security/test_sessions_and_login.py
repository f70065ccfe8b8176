"""SECURITY.md sections AUTHN (login, brute force, lockout) and SESS (portal sessions)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from core.settings import Settings
from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import PATIENT, STRONG_PASSWORD, enabled_patient, invite
from tests.security.support import (
    CHANGE_PASSWORD,
    DISABLE,
    SELF_RESET,
    SET_CREDENTIALS,
    UPDATE_PATIENT,
    active_patient,
    b64decode_token,
    codes,
    database_text,
    identity,
    login,
    redeem,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]
LOGOUT = "mutation($all: Boolean) { logout(input: {everywhere: $all}) { ok userErrors { code } } }"
WRONG = "not-the-password-at-all"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"trusted_proxies": ["203.0.113.7/32"], "rate_limit_login": "1000/minute"}


async def session_alive(api: Api, session: str) -> bool:
    """A wrong current password answers INVALID_CREDENTIALS for a live session and
    UNAUTHENTICATED for a dead one; nothing changes either way."""
    result = await api.gql(CHANGE_PASSWORD, {"c": "wrong-current-password", "n": "whatever-new-pass-1"}, session)
    if result.get("errors"):
        assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        return False
    assert codes(result["data"]["changePassword"]) == ["INVALID_CREDENTIALS"]
    return True


async def locked(api: Api, staff: Staff, pid: str) -> bool:
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    return bool(patient["account"]["locked"])


def later(**delta: float) -> datetime:
    return datetime.now().astimezone() + timedelta(**delta)


async def test_failures_lock_the_account(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """AUTHN-1: after lockout_threshold (<= 100) consecutive failures the account locks:
    even the right password is refused with the generic answer, staff see `locked`, and
    the lock-out is audited."""
    assert api.settings.lockout_threshold <= 100
    pid = await active_patient(api, staff.token, mailbox)
    for _ in range(api.settings.lockout_threshold):
        assert codes(await login(api, "patient1", WRONG)) == ["INVALID_CREDENTIALS"]
    refused = await login(api, "patient1", STRONG_PASSWORD)
    assert refused["sessionToken"] is None and codes(refused) == ["INVALID_CREDENTIALS"]
    assert await locked(api, staff, pid)
    actions = [row["action"] for row in await table_rows("audit_event")]
    assert actions.count("login.locked_out") == 1


def test_lockout_threshold_cannot_exceed_100() -> None:
    """AUTHN-1: configuration cannot raise the cap above NIST's 100 failures."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(_env_file=None, lockout_threshold=101)  # type: ignore[call-arg]
    assert Settings(_env_file=None, lockout_threshold=100).lockout_threshold == 100  # type: ignore[call-arg]


async def test_failures_count_per_account_not_per_address(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """AUTHN-2: failures from many addresses (and spellings of the username) add up on the
    account; a successful login clears the count."""
    pid = await active_patient(api, staff.token, mailbox)
    threshold = api.settings.lockout_threshold
    for i in range(threshold - 1):
        await login(api, "PATIENT1 " if i % 2 else "patient1", WRONG, **{"X-Forwarded-For": f"198.51.100.{i + 1}"})
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]  # resets the count
    for i in range(threshold - 1):
        await login(api, "patient1", WRONG, **{"X-Forwarded-For": f"192.0.2.{i + 1}"})
    assert not await locked(api, staff, pid)
    await login(api, "Patient1", WRONG, **{"X-Forwarded-For": "192.0.2.250"})
    assert await locked(api, staff, pid)
    assert (await login(api, "patient1", STRONG_PASSWORD, **{"X-Forwarded-For": "192.0.2.251"}))["sessionToken"] is None


async def test_lockout_is_temporary(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """AUTHN-3: the lock lasts lockout_minutes (15, Keycloak's max wait), then the right
    password works again."""
    pid = await active_patient(api, staff.token, mailbox)
    for _ in range(api.settings.lockout_threshold):
        await login(api, "patient1", WRONG)
    minutes = api.settings.lockout_minutes
    assert minutes == 15
    with time_machine.travel(later(minutes=minutes - 1), tick=False):
        assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"] is None
    with time_machine.travel(later(minutes=minutes + 1), tick=False):
        assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
        assert not await locked(api, staff, pid)


async def test_locked_patient_can_still_reset_by_email(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """AUTHN-4: a lock-out never locks the patient out for good: the self-service link
    still arrives while locked, and redeeming it clears the lock at once."""
    pid = await active_patient(api, staff.token, mailbox)
    for _ in range(api.settings.lockout_threshold):
        await login(api, "patient1", WRONG)
    assert await locked(api, staff, pid)

    result = await api.gql(SELF_RESET, {"input": identity(1)})
    assert result["data"]["requestSelfReset"]["ok"] is True
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[-1])
    assert (await redeem(api, token, None, "a-brand-new-passphrase-9", "1980-04-12"))["userErrors"] == []
    assert not await locked(api, staff, pid)
    assert (await login(api, "patient1", "a-brand-new-passphrase-9"))["sessionToken"]


async def test_secrets_are_looked_up_by_digest(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """AUTHN-5: link, session and staff tokens are found by the SHA-256 digest of what the
    client sent (a database equality on a digest leaks no prefix timing of the raw
    secret); a token that differs in one character is simply unknown."""
    await active_patient(api, staff.token, mailbox)
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    stored_sessions = {row["token_digest"] for row in await table_rows("patient_session")}
    assert hashlib.sha256(session.encode()).hexdigest() in stored_sessions
    stored_staff = {row["token_digest"] for row in await table_rows("staff_user")}
    assert hashlib.sha256(staff.token.encode()).hexdigest() in stored_staff

    flipped = session[:-1] + ("A" if session[-1] != "A" else "B")
    assert not await session_alive(api, flipped)
    bad_staff = staff.token[:-1] + ("A" if staff.token[-1] != "A" else "B")
    result = await api.gql("{ onboarding { totalCount } }", token=bad_staff)
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_fresh_deployment_has_no_default_accounts(tmp_path: Path) -> None:
    """AUTHN-6: migrating an empty database creates no practice, staff user or portal
    account; staff tokens exist only after `portal create-staff` (random, shown once)."""
    script = (
        "import asyncio, json, sys\n"
        "from models.database import migrate, connect, disconnect\n"
        "from tortoise import connections\n"
        "async def main(url):\n"
        "    await migrate(url); await connect(url)\n"
        "    conn = connections.get('default'); out = {}\n"
        "    for t in ('practice', 'staff_user', 'portal_account', 'patient_session', 'patient'):\n"
        "        out[t] = (await conn.execute_query_dict(f'SELECT COUNT(*) AS n FROM {t}'))[0]['n']\n"
        "    await disconnect(); print(json.dumps(out))\n"
        "asyncio.run(main(sys.argv[1]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script, f"sqlite://{tmp_path}/fresh.sqlite3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert counts == dict.fromkeys(counts, 0)


async def test_session_tokens_are_random_and_stored_as_digests(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """SESS-1: session tokens carry >= 256 bits from `secrets` and only their SHA-256
    digest is stored; the raw token is in no table."""
    await active_patient(api, staff.token, mailbox)
    first = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    second = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    for token in (first, second):
        assert token.startswith("ses_")
        assert len(b64decode_token(token[len("ses_"):])) >= 32
    assert first != second
    dump = await database_text()
    for token in (first, second, staff.token):
        assert token not in dump and token[4:24] not in dump


async def test_sessions_expire(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """SESS-2: a session ends session_ttl_minutes (30, the AAL2 inactivity bound and HIPAA
    automatic logoff) after login, checked on the server."""
    await active_patient(api, staff.token, mailbox)
    assert api.settings.session_ttl_minutes <= 30
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    ttl = api.settings.session_ttl_minutes
    with time_machine.travel(later(minutes=ttl - 1), tick=False):
        assert await session_alive(api, session)
    with time_machine.travel(later(minutes=ttl, seconds=30), tick=False):
        assert not await session_alive(api, session)


async def _disable(api: Api, staff: Staff, pid: str) -> None:
    await api.gql(DISABLE, {"ids": [pid]}, staff.token)


async def _chart_deceased(api: Api, staff: Staff, pid: str) -> None:
    await api.gql(UPDATE_PATIENT, {"input": {"id": pid, "chartStatus": "DECEASED"}}, staff.token)


async def _staff_sets_password(api: Api, staff: Staff, pid: str) -> None:
    result = await api.gql(
        SET_CREDENTIALS, {"pid": pid, "u": "patient1", "p": "temporary-passphrase-31"}, staff.token
    )
    assert result["data"]["setCredentials"]["userErrors"] == []


async def _reset_link_redeemed(api: Api, staff: Staff, pid: str) -> None:
    mailbox = api.mailbox  # type: ignore[attr-defined]
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[-1])
    assert (await redeem(api, token, None, "a-brand-new-passphrase-9", "1980-04-12"))["userErrors"] == []


async def _logout_everywhere(api: Api, staff: Staff, pid: str) -> None:
    other = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    result = await api.gql(LOGOUT, {"all": True}, other)
    assert result["data"]["logout"]["ok"] is True


@pytest.mark.parametrize(
    "event",
    [_disable, _chart_deceased, _staff_sets_password, _reset_link_redeemed, _logout_everywhere],
    ids=lambda f: f.__name__.strip("_"),
)
async def test_sessions_end_on_disable_reset_and_logout(
    api: Api, staff: Staff, mailbox: Mailbox, event: Any
) -> None:
    """SESS-3: all of a patient's sessions end when portal access or the chart is disabled,
    when the password is reset (link or staff) and on logout everywhere."""
    pid = await active_patient(api, staff.token, mailbox)
    sessions = [(await login(api, "patient1", STRONG_PASSWORD))["sessionToken"] for _ in range(2)]
    assert all([await session_alive(api, s) for s in sessions])
    api.mailbox = mailbox  # type: ignore[attr-defined]
    await event(api, staff, pid)
    for session in sessions:
        assert not await session_alive(api, session)


async def test_logout_ends_this_session_on_the_server(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """SESS-3: logout revokes the bearer token server-side (ASVS 5.0 V7.4.1) and is audited;
    the patient's other sessions survive unless `everywhere` is set; anonymous logout is
    UNAUTHENTICATED."""
    await active_patient(api, staff.token, mailbox)
    this = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    other = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    result = await api.gql(LOGOUT, {"all": None}, this)
    assert result["data"]["logout"] == {"ok": True, "userErrors": []}
    assert not await session_alive(api, this)
    assert await session_alive(api, other)
    again = await api.gql(LOGOUT, {}, this)
    assert again["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "logout" in [row["action"] for row in await table_rows("audit_event")]


async def test_password_change_rotates_the_session(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """SESS-3, SESS-4: changePassword revokes every session (this one included) and hands
    out a fresh token."""
    await active_patient(api, staff.token, mailbox)
    old = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    elsewhere = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    result = await api.gql(CHANGE_PASSWORD, {"c": STRONG_PASSWORD, "n": "a-brand-new-passphrase-9"}, old)
    fresh = result["data"]["changePassword"]["sessionToken"]
    assert fresh and fresh not in (old, elsewhere)
    assert not await session_alive(api, old) and not await session_alive(api, elsewhere)
    assert await session_alive(api, fresh)


async def test_staff_set_password_gives_a_limited_session(api: Api, staff: Staff) -> None:
    """SESS-4, NOTIF-2: each login issues a new token; with a staff-set password the session
    is limited (mustChangePassword, no full access) until the patient chooses their own,
    and it never opens staff operations."""
    pid = await enabled_patient(api, staff.token)
    await api.gql(SET_CREDENTIALS, {"pid": pid, "u": "patient1", "p": "temporary-passphrase-31"}, staff.token)
    first = await login(api, "patient1", "temporary-passphrase-31")
    assert first["mustChangePassword"] is True
    [row] = await table_rows("patient_session")
    assert not row["full_access"]
    staff_call = await api.gql("{ onboarding { totalCount } }", token=first["sessionToken"])
    assert staff_call["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    changed = await api.gql(
        CHANGE_PASSWORD, {"c": "temporary-passphrase-31", "n": "my-own-passphrase-2024"}, first["sessionToken"]
    )
    assert changed["data"]["changePassword"]["ok"] is True
    again = await login(api, "patient1", "my-own-passphrase-2024")
    assert again["mustChangePassword"] is False
    assert again["sessionToken"] not in (first["sessionToken"], changed["data"]["changePassword"]["sessionToken"])
