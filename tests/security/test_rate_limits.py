"""Rate limits in the business layer (SECURITY TOK-7, GQL-9, ENUM-3, AUTHN-2, LOG-5):
small budgets through settings, X-Forwarded-For handling with and without a trusted
proxy."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine

from tests.conftest import Api, Mailbox, Staff
from tests.helpers import STRONG_PASSWORD
from tests.security.support import (
    CHANGE_PASSWORD,
    REMINDER,
    SELF_RESET,
    TOKEN_INFO,
    USERNAME_AVAILABLE,
    HasherSpy,
    active_patient,
    codes,
    identity,
    invited,
    login,
    redeem,
    table_rows,
)

BUDGETS = {
    "rate_limit_login": "3/minute",
    "rate_limit_token": "3/minute",
    "rate_limit_self_service": "2/minute",
    "rate_limit_username_check": "3/minute",
}
PROXIED = {**BUDGETS, "trusted_proxies": ["203.0.113.7/32"]}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(BUDGETS)


def a_minute_later() -> datetime:
    return datetime.now().astimezone() + timedelta(seconds=61)


async def test_login_is_rate_limited_per_address(
    api: Api, staff: Staff, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GQL-9, AUTHN-1: login attempts are counted per client address in the resolver; over
    budget the answer is RATE_LIMITED and no hash is computed."""
    await active_patient(api, staff.token, mailbox)
    spy = HasherSpy().install(api, monkeypatch)
    for i in range(3):
        assert codes(await login(api, f"guess{i}", "wrong-password-123")) == ["INVALID_CREDENTIALS"]
    verified = len(spy.verified)
    limited = await login(api, "patient1", STRONG_PASSWORD)
    assert codes(limited) == ["RATE_LIMITED"] and limited["sessionToken"] is None
    assert len(spy.verified) == verified
    with time_machine.travel(a_minute_later(), tick=False):
        assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]


async def test_rotating_x_forwarded_for_does_not_reset_the_budget(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """LOG-5, GQL-9: with no trusted proxy configured, X-Forwarded-For is ignored: rotating
    it neither resets the per-address budgets nor changes the audited address."""
    await active_patient(api, staff.token, mailbox)
    for i in range(3):
        headers = {"X-Forwarded-For": f"198.51.100.{i + 1}", "X-Real-IP": f"192.0.2.{i + 1}"}
        await login(api, f"guess{i}", "wrong-password-123", **headers)
    limited = await login(api, "patient1", STRONG_PASSWORD, **{"X-Forwarded-For": "198.51.100.99"})
    assert codes(limited) == ["RATE_LIMITED"]
    for i in range(2):
        await api.gql(SELF_RESET, {"input": identity(50 + i)}, **{"X-Forwarded-For": f"10.0.0.{i}"})
    third = await api.gql(SELF_RESET, {"input": identity(60)}, **{"X-Forwarded-For": "10.9.9.9"})
    assert codes(third["data"]["requestSelfReset"]) == ["RATE_LIMITED"]
    await api.services.background.drain()

    addresses = {row["client_addr"] for row in await table_rows("audit_event") if row["actor_type"] == "ANONYMOUS"}
    assert addresses == {"203.0.113.7"}


@pytest.mark.parametrize("settings_overrides", [PROXIED])
async def test_trusted_proxy_forwarded_address_is_used(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """LOG-5, AUTHN-2: behind a configured proxy the right-most untrusted X-Forwarded-For
    hop is the client: each forwarded client has its own address budget and is audited
    under its own address, while the per-username budget still holds across addresses."""
    await active_patient(api, staff.token, mailbox)
    for i in range(5):
        result = await login(
            api, f"guess{i}", "wrong-password-123", **{"X-Forwarded-For": f"198.51.100.{i + 1}"}
        )
        assert codes(result) == ["INVALID_CREDENTIALS"]
    # a client cannot choose its address by prepending hops: the proxy appended the real one
    spoofed = {"X-Forwarded-For": "127.0.0.1, 10.0.0.1, 198.51.100.77"}
    await login(api, "patient1", "wrong-password-123", **spoofed)
    events = [r for r in await table_rows("audit_event") if r["action"] == "login.failed"]
    assert [e["client_addr"] for e in events] == [
        *(f"198.51.100.{i + 1}" for i in range(5)),
        "198.51.100.77",
    ]
    # per-username budget: the same username from ever new addresses is still limited
    for i in range(2):
        await login(api, "patient1", "wrong-password-123", **{"X-Forwarded-For": f"192.0.2.{i + 1}"})
    limited = await login(api, "patient1", STRONG_PASSWORD, **{"X-Forwarded-For": "192.0.2.200"})
    assert codes(limited) == ["RATE_LIMITED"]


@pytest.mark.parametrize("settings_overrides", [PROXIED])
async def test_forwarded_header_from_an_untrusted_peer_is_ignored(api: Api) -> None:
    """LOG-5: only peers listed in trusted_proxies may set X-Forwarded-For."""
    transport = httpx.ASGITransport(app=api.app, client=("192.0.2.50", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as other:
        for _ in range(2):
            await other.post(
                "/graphql",
                json={"query": SELF_RESET, "variables": {"input": identity(70)}},
                headers={"X-Forwarded-For": "198.51.100.1"},
            )
    await api.services.background.drain()
    [*_, last] = await table_rows("audit_event")
    assert last["client_addr"] == "192.0.2.50"


async def test_token_endpoints_are_rate_limited(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """TOK-7: tokenInfo and redeemToken share a per-address budget; once spent even the
    right token is refused with RATE_LIMITED, and it works again after the window."""
    _, token = await invited(api, staff.token, mailbox)
    for i in range(2):
        info = await api.gql(TOKEN_INFO, {"t": f"guess-{i}-" + "x" * 36})
        assert info["data"]["tokenInfo"]["error"] == "TOKEN_INVALID"
    assert codes(await redeem(api, "guess-" + "y" * 37, "avery.q")) == ["TOKEN_INVALID"]
    limited_info = (await api.gql(TOKEN_INFO, {"t": token}))["data"]["tokenInfo"]
    assert limited_info["valid"] is False and limited_info["error"] == "RATE_LIMITED"
    assert codes(await redeem(api, token, "avery.q")) == ["RATE_LIMITED"]
    with time_machine.travel(a_minute_later(), tick=False):
        assert (await redeem(api, token, "avery.q"))["userErrors"] == []


@pytest.mark.parametrize("document", [SELF_RESET, REMINDER], ids=["selfReset", "usernameReminder"])
async def test_self_service_is_rate_limited(
    api: Api, staff: Staff, mailbox: Mailbox, document: str
) -> None:
    """ENUM-3, GQL-9: requestSelfReset and requestUsernameReminder are budgeted per client
    address and per typed email; RATE_LIMITED depends only on the request, never on
    whether a chart matched."""
    await active_patient(api, staff.token, mailbox)
    name = "requestSelfReset" if document == SELF_RESET else "requestUsernameReminder"
    first = await api.gql(document, {"input": identity(1)})
    second = await api.gql(document, {"input": identity(99, email="nobody@example.com")})
    assert first["data"][name]["ok"] is True and second["data"][name]["ok"] is True
    for claim in (identity(1), identity(99, email="nobody@example.com")):
        refused = (await api.gql(document, {"input": claim}))["data"][name]
        assert refused["ok"] is False and codes(refused) == ["RATE_LIMITED"]


@pytest.mark.parametrize("settings_overrides", [PROXIED])
async def test_self_service_is_rate_limited_per_email(api: Api) -> None:
    """ENUM-3: the same typed email from ever new addresses is limited too."""
    answers = []
    for i in range(3):
        result = await api.gql(
            SELF_RESET, {"input": identity(1)}, **{"X-Forwarded-For": f"198.51.100.{i + 1}"}
        )
        answers.append(codes(result["data"]["requestSelfReset"]))
    assert answers == [[], [], ["RATE_LIMITED"]]


async def test_username_checks_are_rate_limited(api: Api, staff: Staff) -> None:
    """GQL-9 (SPEC 7.8): usernameAvailable is staff-only and budgeted per staff user."""
    for i in range(3):
        result = await api.gql(USERNAME_AVAILABLE, {"u": f"candidate{i}"}, staff.token)
        assert result["data"]["usernameAvailable"]["available"] is True
    refused = await api.gql(USERNAME_AVAILABLE, {"u": "candidate9"}, staff.token)
    assert refused["data"] is None
    assert "too many" in refused["errors"][0]["message"]
    assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    anonymous = await api.gql(USERNAME_AVAILABLE, {"u": "candidate9"})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_change_password_is_rate_limited(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """GQL-9: guessing the current password through changePassword spends the login budget."""
    await active_patient(api, staff.token, mailbox)
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    answers = []
    for i in range(3):
        result = await api.gql(
            CHANGE_PASSWORD, {"c": f"guess-{i}-aaaaaaaa", "n": "a-brand-new-passphrase-9"}, session
        )
        answers.append(codes(result["data"]["changePassword"]))
    assert answers[:2] == [["INVALID_CREDENTIALS"]] * 2
    assert answers[2] == ["RATE_LIMITED"]


@pytest.mark.parametrize("settings_overrides", [PROXIED])
async def test_a_forwarded_ipv6_zone_id_is_not_kept(api: Api) -> None:
    """LOG-5: an IPv6 hop with a zone id ("fe80::1%<any length>") is audited as the
    address alone: the zone names an interface of the sender's host, and its length is
    unbounded (the audit column holds 64 characters; SQLite would store more, PostgreSQL
    refuse the row)."""
    zone = "z" * 100
    await login(api, "nobody", "wrong-password-123", **{"X-Forwarded-For": f"fe80::1%{zone}"})
    [*_, last] = await table_rows("audit_event")
    assert last["action"] == "login.failed"
    assert last["client_addr"] == "fe80::1"
