"""Issue 9: every operation on one patient at once, for a few seconds, then the invariants.

Workers pick operations at random (a fixed seed; the interleaving itself is up to the
scheduler and the database): logins right and wrong, password changes, staff-set
passwords, invitations, redemptions, disable and enable, chart status changes, logouts.
Afterwards the patient's rows must satisfy what the unit of work promises."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.clock import utcnow
from core.passwords import pwd_context
from core.secrets import digest
from graph.ids import patient_pk
from tests.conftest import TOKEN_RE, Api, Mailbox, Staff, body_text
from tests.helpers import PATIENT, REDEEM, enabled_patient, invite
from tests.security.support import (
    CHANGE_PASSWORD,
    DISABLE,
    SET_CREDENTIALS,
    UPDATE_PATIENT,
    table_rows,
)

ROUNDS = 4
SECONDS_PER_ROUND = 0.8
MAX_OPERATIONS = 400
WORKERS = 6
PASSWORDS = ["violet-harbor-tuesday-42", "granite-orchard-winter-05", "kettle-maple-sunrise-77"]
USERNAME = "stress.patient"
EMAIL = "avery.quinn1@example.com"
DOB = "1980-04-12"
ENABLE = """mutation($ids: [ID!]!) { enablePortal(input: {patientIds: $ids}) { userErrors { code } } }"""
LOGIN = """
mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { sessionToken } }"""
LOGOUT = "mutation { logout { ok } }"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    budget = "100000/minute"
    return {
        "rate_limit_login": budget,
        "rate_limit_token": budget,
        "rate_limit_set_credentials": budget,
        "redeem_dob": "always",
        # Wrong guesses are part of the mix; a lock-out on the fifth would freeze the
        # run for its 15 minutes, so the threshold is higher here (the rule is the same).
        "lockout_threshold": 25,
    }


def pk(pid: str) -> int:
    """The database id behind a patient's global id."""
    value = patient_pk(pid)
    assert value is not None
    return value


def as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def expected_status(patient: dict[str, Any], account: dict[str, Any] | None,
                    link: dict[str, Any] | None, ttl_days: int, now: datetime) -> str:
    """SPEC section 3 computed from the rows, independently of onboarding/status.py."""
    if not patient["portal_enabled"]:
        return "DISABLED"
    if account is not None:
        origin = account["password_origin"]
        set_at = as_datetime(account["password_set_at"])
        last_login = as_datetime(account["last_login_at"])
        if origin == "patient" or (
            origin == "staff" and last_login is not None and set_at is not None
            and last_login >= set_at
        ):
            return "ACTIVE"
        if origin == "staff" and set_at is not None and set_at > now - timedelta(days=ttl_days):
            return "CREDENTIALS_ISSUED"
    if not patient["email"]:
        return "NO_EMAIL"
    if link is not None:
        open_link = link["used_at"] is None and link["revoked_at"] is None
        if open_link and as_datetime(link["expires_at"]) > now:  # type: ignore[operator]
            return "INVITED"
        return "INVITATION_EXPIRED"
    return "NOT_INVITED"


async def test_one_patient_under_every_operation_at_once_keeps_its_invariants(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    result = await api.gql(
        SET_CREDENTIALS, {"pid": pid, "u": USERNAME, "p": PASSWORDS[0]}, staff.token
    )
    assert result["data"]["setCredentials"]["userErrors"] == []
    rng = random.Random(9)
    sessions: list[str] = []
    opened_with: dict[str, str] = {}  # session token digest -> the password that opened it
    links: list[str] = []
    done = {"ops": 0}

    current = {"password": PASSWORDS[0]}

    async def run(op: str) -> None:
        password = rng.choice(PASSWORDS)
        if op == "login":
            variables = {"u": USERNAME, "p": current["password"]}
            token = (await api.gql(LOGIN, variables))["data"]["login"]
            if token["sessionToken"]:
                sessions.append(token["sessionToken"])
                opened_with[digest(token["sessionToken"])] = variables["p"]
        elif op == "wrong_login":
            await api.gql(LOGIN, {"u": USERNAME, "p": "not-the-password-at-all"})
        elif op == "change" and sessions:
            variables = {"c": current["password"], "n": password}
            result = await api.gql(CHANGE_PASSWORD, variables, rng.choice(sessions))
            payload = (result.get("data") or {}).get("changePassword")
            if payload and payload["sessionToken"]:
                sessions.append(payload["sessionToken"])
                opened_with[digest(payload["sessionToken"])] = password
                current["password"] = password
        elif op == "staff_password":
            result = await api.gql(
                SET_CREDENTIALS, {"pid": pid, "u": USERNAME, "p": password}, staff.token
            )
            if result["data"]["setCredentials"]["account"]:
                current["password"] = password
        elif op == "invite":
            await invite(api, staff.token, pid)
            await api.deliver()
            for message in mailbox.to(EMAIL):
                if match := TOKEN_RE.search(body_text(message)):
                    links.append(match.group(1))
            mailbox.clear()
        elif op == "redeem" and links:
            result = await api.gql(
                REDEEM,
                {"input": {"token": rng.choice(links), "password": password, "dateOfBirth":
                           rng.choice([DOB, DOB, "1990-01-01"]), "username": USERNAME}},
            )
            if result["data"]["redeemToken"]["account"]:
                current["password"] = password
        elif op == "disable":
            await api.gql(DISABLE, {"ids": [pid]}, staff.token)
        elif op == "enable":
            await api.gql(ENABLE, {"ids": [pid]}, staff.token)
        elif op == "chart":
            await api.gql(
                UPDATE_PATIENT,
                {"input": {"id": pid, "chartStatus": rng.choice(["ACTIVE", "ACTIVE", "INACTIVE"])}},
                staff.token,
            )
        elif op == "logout" and sessions:
            await api.gql(LOGOUT, token=rng.choice(sessions))

    operations = ["login"] * 4 + ["wrong_login", "change", "change", "staff_password",
                  "invite", "redeem", "redeem", "disable", "enable", "enable", "enable",
                  "chart", "logout"]

    async def worker(deadline: float) -> None:
        while time.monotonic() < deadline and done["ops"] < MAX_OPERATIONS:
            done["ops"] += 1
            await run(rng.choice(operations))

    for _ in range(ROUNDS):
        deadline = time.monotonic() + SECONDS_PER_ROUND
        await asyncio.gather(*(worker(deadline) for _ in range(WORKERS)))
        await api.services.background.drain()
        await check_invariants(api, staff, pid, opened_with)
    assert done["ops"] >= 20, "too few operations to mean anything"
    assert sessions and links, "the run never logged in or never sent a link"
    print(f"stress: {done['ops']} operations, {len(sessions)} sessions, {len(links)} links")


async def check_invariants(api: Api, staff: Staff, pid: str, opened_with: dict[str, str]) -> None:
    now = utcnow()
    [patient] = [p for p in await table_rows("patient") if p["id"] == pk(pid)]
    accounts = [a for a in await table_rows("portal_account") if a["patient_id"] == pk(pid)]
    account = accounts[0] if accounts else None
    links_rows = [row for row in await table_rows("link_token") if row["patient_id"] == pk(pid)]
    usable = [
        row for row in links_rows
        if row["used_at"] is None and row["revoked_at"] is None
        and as_datetime(row["expires_at"]) > now  # type: ignore[operator]
    ]
    live = [
        s for s in await table_rows("patient_session")
        if account is not None and s["account_id"] == account["id"] and s["revoked_at"] is None
        and as_datetime(s["expires_at"]) > now  # type: ignore[operator]
    ]

    # at most one usable link, and it is the one the patient points at
    assert len(usable) <= 1
    if usable:
        assert patient["last_link_id"] == usable[0]["id"]
    # access ended: no link, no session
    if not patient["portal_enabled"]:
        assert usable == [] and live == []
    assert bool(patient["portal_enabled"]) <= (patient["chart_status"] in ("ACTIVE", "PROSPECTIVE"))
    if account is not None and account["password_set_at"] is not None:
        # every live session was opened with the password the account has now: a reset,
        # a staff-set password or a change ends the sessions of the one before
        for session in live:
            password = opened_with.get(session["token_digest"])
            assert password is not None
            assert pwd_context.verify(password, account["password_hash"])
        # lock-out held: a locked account's failures are not counted past the threshold
        assert account["failed_logins"] < api.settings.lockout_threshold
    # the status the Onboarding Tool shows is the one the rows imply
    last_link = next((row for row in links_rows if row["id"] == patient["last_link_id"]), None)
    shown = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]["portalStatus"]
    assert shown == expected_status(
        patient, account, last_link, api.settings.temporary_password_ttl_days, utcnow()
    )
