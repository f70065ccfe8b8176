"""SECURITY.md section TOK: invitation/reset link tokens."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine

from tests.conftest import Api, Mailbox, Staff, body_text, token_from
from tests.helpers import SEND, STRONG_PASSWORD, enabled_patient, invite
from tests.security.support import (
    CHANGE_PASSWORD,
    DISABLE,
    SELF_RESET,
    SET_CREDENTIALS,
    TOKEN_INFO,
    UPDATE_PATIENT,
    active_patient,
    b64decode_token,
    codes,
    database_text,
    identity,
    invited,
    login,
    redeem,
    table_rows,
)

LINK_BASE = "https://portal.clinic.test/activate"


async def token_info(api: Api, token: str) -> dict[str, Any]:
    return (await api.gql(TOKEN_INFO, {"t": token}))["data"]["tokenInfo"]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_link_token_is_256_bits_from_secrets(
    api: Api, staff: Staff, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOK-1: link tokens come from ``secrets.token_urlsafe`` and decode to >= 32 bytes."""
    real = secrets.token_urlsafe
    sizes: list[int | None] = []

    def spy(nbytes: int | None = None) -> str:
        sizes.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(secrets, "token_urlsafe", spy)
    _, first = await invited(api, staff.token, mailbox, n=1)
    _, second = await invited(api, staff.token, mailbox, n=2)

    assert sizes and all(n is not None and n >= 32 for n in sizes)
    for token in (first, second):
        assert len(b64decode_token(token)) >= 32
    assert first != second


async def test_only_the_digest_of_a_link_token_is_stored(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """TOK-2: the link_token row holds SHA-256 hex (64 chars); once the message has left,
    the raw token appears in no table (the outbox body is scrubbed on send)."""
    pid = await enabled_patient(api, staff.token)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])

    [row] = await table_rows("link_token")
    assert row["digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert len(row["digest"]) == 64 and all(c in "0123456789abcdef" for c in row["digest"])
    dump = await database_text()
    assert token not in dump
    assert token[:20] not in dump


async def test_a_link_token_works_once(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """TOK-3: a second redemption of the same link answers TOKEN_USED and changes nothing."""
    _, token = await invited(api, staff.token, mailbox)
    assert (await redeem(api, token, "avery.q"))["userErrors"] == []

    again = await redeem(api, token, "someone.else", "another-long-passphrase-77")
    assert codes(again) == ["TOKEN_USED"]
    assert (await login(api, "avery.q", STRONG_PASSWORD))["sessionToken"]
    assert (await login(api, "someone.else", "another-long-passphrase-77"))["sessionToken"] is None


async def test_concurrent_redemptions_exactly_one_wins(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """TOK-3: under N concurrent redemptions of one token, exactly one succeeds (conditional
    UPDATE on used_at, on SQLite and PostgreSQL alike)."""
    _, token = await invited(api, staff.token, mailbox)
    attempts = [
        redeem(api, token, f"racer{i}", f"racing-passphrase-number-{i}") for i in range(6)
    ]
    results = await asyncio.gather(*attempts)

    winners = [r for r in results if r["userErrors"] == []]
    assert len(winners) == 1, results
    for loser in results:
        if loser is not winners[0]:
            assert codes(loser) in (["TOKEN_USED"], ["USERNAME_TAKEN"]), loser
    accounts = await table_rows("portal_account")
    assert len(accounts) == 1
    assert accounts[0]["username"] == winners[0]["account"]["username"]


@pytest.mark.parametrize(
    ("self_service", "lifetime"), [(False, timedelta(hours=24)), (True, timedelta(hours=1))]
)
async def test_links_expire_on_the_server(
    api: Api, staff: Staff, mailbox: Mailbox, self_service: bool, lifetime: timedelta
) -> None:
    """TOK-4: staff-sent links live 24 h and self-service links 1 h (SPEC defaults); after
    that tokenInfo and redeemToken answer TOKEN_EXPIRED."""
    pid = await enabled_patient(api, staff.token)
    if self_service:
        result = await api.gql(SELF_RESET, {"input": identity()})
        assert result["data"]["requestSelfReset"]["ok"] is True
    else:
        assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])
    info = await token_info(api, token)
    assert info["valid"] is True
    issued = parse_time(info["expiresAt"]) - lifetime
    assert abs(issued - datetime.now(issued.tzinfo)) < timedelta(minutes=1)

    with time_machine.travel(parse_time(info["expiresAt"]) - timedelta(seconds=5), tick=False):
        assert (await token_info(api, token))["valid"] is True
    with time_machine.travel(parse_time(info["expiresAt"]) + timedelta(seconds=1), tick=False):
        expired = await token_info(api, token)
        assert expired["valid"] is False and expired["error"] == "TOKEN_EXPIRED"
        assert codes(await redeem(api, token, "avery.q")) == ["TOKEN_EXPIRED"]
    assert await table_rows("portal_account") == []


async def _change_password(api: Api, pid: str, staff: Staff) -> None:
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    result = await api.gql(
        CHANGE_PASSWORD, {"c": STRONG_PASSWORD, "n": "a-brand-new-passphrase-9"}, session
    )
    assert result["data"]["changePassword"]["ok"] is True


async def _staff_set_password(api: Api, pid: str, staff: Staff) -> None:
    result = await api.gql(
        SET_CREDENTIALS, {"pid": pid, "u": "patient1", "p": "temporary-passphrase-31"}, staff.token
    )
    assert result["data"]["setCredentials"]["userErrors"] == []


async def _change_email(api: Api, pid: str, staff: Staff) -> None:
    result = await api.gql(
        UPDATE_PATIENT, {"input": {"id": pid, "email": "new.address@example.com"}}, staff.token
    )
    assert result["data"]["updatePatient"]["userErrors"] == []


async def _disable_portal(api: Api, pid: str, staff: Staff) -> None:
    result = await api.gql(DISABLE, {"ids": [pid]}, staff.token)
    assert result["data"]["disablePortal"]["results"][0]["userErrors"] == []


async def _chart_inactive(api: Api, pid: str, staff: Staff) -> None:
    result = await api.gql(
        UPDATE_PATIENT, {"input": {"id": pid, "chartStatus": "DECEASED"}}, staff.token
    )
    assert result["data"]["updatePatient"]["userErrors"] == []


async def _newer_link(api: Api, pid: str, staff: Staff) -> None:
    assert (await invite(api, staff.token, pid))["userErrors"] == []


@pytest.mark.parametrize(
    "change",
    [_change_password, _staff_set_password, _change_email, _disable_portal, _chart_inactive, _newer_link],
    ids=lambda f: f.__name__.strip("_"),
)
async def test_outstanding_links_die_on_state_change(
    api: Api, staff: Staff, mailbox: Mailbox, change: Any
) -> None:
    """TOK-5: an outstanding reset link is revoked when the password changes (patient or
    staff), the address of record changes, portal access or the chart is disabled, and
    when a newer link is issued."""
    pid = await active_patient(api, staff.token, mailbox)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    [message] = mailbox.to("avery.quinn1@example.com")
    token = token_from(message)
    assert (await token_info(api, token))["valid"] is True

    await change(api, pid, staff)

    info = await token_info(api, token)
    assert info["valid"] is False and info["error"] == "TOKEN_INVALID", info
    assert codes(await redeem(api, token, None, "attacker-chosen-passphrase-1")) == ["TOKEN_INVALID"]


async def test_requesting_a_reset_changes_nothing_on_the_account(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """TOK-6: a self-service request and a staff-sent reset link neither lock the account
    nor touch its password until a valid token is presented."""
    await active_patient(api, staff.token, mailbox)
    [before] = await table_rows("portal_account")

    result = await api.gql(SELF_RESET, {"input": identity()})
    assert result["data"]["requestSelfReset"]["ok"] is True
    pid = str(before["patient_id"])
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    assert len(mailbox.to("avery.quinn1@example.com")) == 2

    [after] = await table_rows("portal_account")
    for column in ("password_hash", "failed_logins", "locked_until", "must_change_password"):
        assert after[column] == before[column], column
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "evil.example"},
        {"x-forwarded-host": "evil.example", "x-forwarded-proto": "http"},
        {"forwarded": "host=evil.example;proto=http", "x-original-url": "//evil.example/x"},
    ],
    ids=["host", "x-forwarded-host", "forwarded"],
)
async def test_emailed_link_ignores_request_host_headers(
    api: Api, staff: Staff, mailbox: Mailbox, headers: dict[str, str]
) -> None:
    """TOK-8: the link is built from PORTAL_LINK_BASE_URL, never from Host /
    X-Forwarded-Host / Forwarded, for staff-sent and self-service links alike."""
    pid = await create_enabled(api, staff, 1)
    await create_enabled(api, staff, 2)
    sent = await api.gql(SEND, {"ids": [pid], "confirm": False}, staff.token, **headers)
    assert sent["data"]["sendInvitation"]["results"][0]["userErrors"] == []
    reset = await api.gql(SELF_RESET, {"input": identity(2)}, **headers)
    assert reset["data"]["requestSelfReset"]["ok"] is True
    await api.deliver()

    messages = mailbox.to("avery.quinn1@example.com") + mailbox.to("avery.quinn2@example.com")
    assert len(messages) == 2
    assert api.settings.link_base_url == LINK_BASE
    for message in messages:
        text = body_text(message)
        links = [word for word in text.split() if "#token=" in word]
        assert links == [f"{LINK_BASE}#token={token_from(message)}"]
        assert "evil" not in message.as_string()


async def create_enabled(api: Api, staff: Staff, n: int) -> str:
    return await enabled_patient(api, staff.token, n=n)


async def test_token_travels_in_the_fragment_only(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """TOK-9: the token sits in the URL fragment (never sent in Referer or to a server log);
    the API's own responses carry Referrer-Policy: no-referrer."""
    _, token = await invited(api, staff.token, mailbox)
    [message] = mailbox.to("avery.quinn1@example.com")
    html = next(p for p in message.walk() if p.get_content_type() == "text/html")
    html_text = html.get_payload(decode=True).decode()
    link = f"{LINK_BASE}#token={token}"
    assert link in body_text(message) and link in html_text

    parts = urlsplit(link)
    assert parts.scheme == "https"
    assert parts.query == "" and token not in parts.path
    assert parts.fragment == f"token={token}"
    response = await api.client.post(
        "/graphql", json={"query": TOKEN_INFO, "variables": {"t": token}}
    )
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_invitation_is_an_enrollment_code_not_a_password(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """TOK-10: the emailed secret only lets the patient choose their own password: it is no
    password itself, redemption demands a new acceptable password, and it dies on use."""
    _, token = await invited(api, staff.token, mailbox)
    assert codes(await redeem(api, token, "avery.q", "")) == ["PASSWORD_TOO_WEAK"]
    assert (await token_info(api, token))["valid"] is True  # nothing was written
    assert await table_rows("portal_account") == []

    assert (await redeem(api, token, "avery.q"))["userErrors"] == []
    assert (await login(api, "avery.q", token))["sessionToken"] is None
    assert codes(await redeem(api, token, "avery.q")) == ["TOKEN_USED"]


async def test_staff_typed_password_expires_unused(api: Api, staff: Staff) -> None:
    """TOK-10 (SPEC 7.6): a staff-issued initial secret stops working after
    temporary_password_ttl_days unused, and while it works it only grants a forced change."""
    for n in (1, 2):
        pid = await enabled_patient(api, staff.token, n=n)
        result = await api.gql(
            SET_CREDENTIALS, {"pid": pid, "u": f"user{n}", "p": "temporary-passphrase-31"}, staff.token
        )
        assert result["data"]["setCredentials"]["account"]["mustChangePassword"] is True
    expiry = datetime.now().astimezone() + timedelta(days=api.settings.temporary_password_ttl_days)
    with time_machine.travel(expiry - timedelta(minutes=5), tick=False):
        first = await login(api, "user1", "temporary-passphrase-31")
        assert first["sessionToken"] and first["mustChangePassword"] is True
    with time_machine.travel(expiry + timedelta(minutes=5), tick=False):
        late = await login(api, "user2", "temporary-passphrase-31")
        assert late["sessionToken"] is None and codes(late) == ["INVALID_CREDENTIALS"]


async def test_each_link_is_distinct_and_only_the_newest_works(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """TOK-1, TOK-5: bulk sending issues one distinct token per patient; resending revokes
    each patient's older link."""
    ids = [await enabled_patient(api, staff.token, n=n) for n in (1, 2, 3)]
    for _ in range(2):
        result = await api.gql(SEND, {"ids": ids, "confirm": False}, staff.token)
        assert all(r["userErrors"] == [] for r in result["data"]["sendInvitation"]["results"])
        # delivered per round: parallel SMTP connections do not keep arrival order
        await api.deliver()
    tokens = {
        n: [token_from(m) for m in mailbox.to(f"avery.quinn{n}@example.com")] for n in (1, 2, 3)
    }
    flat = [t for ts in tokens.values() for t in ts]
    assert len(flat) == 6 and len(set(flat)) == 6
    for old, new in tokens.values():
        assert (await token_info(api, old))["valid"] is False
        assert (await token_info(api, new))["valid"] is True
