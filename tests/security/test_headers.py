"""Protective response headers on every answer that can carry a credential or health data
(SECURITY TOK-9 Referrer-Policy; no caching of tokens/sessions per SESS-1/TOK-2, ASVS 5.0
V14.3.2 — SECURITY.md has no separate ID for Cache-Control)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, Mailbox, Staff
from tests.helpers import STRONG_PASSWORD, enabled_patient
from tests.security.support import (
    CHANGE_PASSWORD,
    REDEEM,
    REMINDER,
    SELF_RESET,
    SET_CREDENTIALS,
    TOKEN_INFO,
    identity,
    invited,
    login,
)

EXPECTED = {
    "cache-control": "no-store",
    "pragma": "no-cache",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


def assert_protective(response: Any) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (name, response.status_code, dict(response.headers))
    assert len(response.headers.get_list("cache-control")) == 1
    assert response.headers.get("x-request-id")


async def test_credential_responses_are_never_cached(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """SESS-1, TOK-2, TOK-9: login, redeemToken, tokenInfo, changePassword, setCredentials,
    requestSelfReset and requestUsernameReminder answers carry Cache-Control: no-store
    (a session token or link state must not sit in a browser or proxy cache) and
    Referrer-Policy: no-referrer."""
    pid, token = await invited(api, staff.token, mailbox)
    other = await enabled_patient(api, staff.token, n=2)
    calls: list[tuple[str, dict[str, Any], str | None]] = [
        (TOKEN_INFO, {"t": token}, None),
        (REDEEM, {"input": {"token": token, "username": "avery.q", "password": STRONG_PASSWORD}}, None),
        (SELF_RESET, {"input": identity(1)}, None),
        (REMINDER, {"input": identity(1)}, None),
        (SET_CREDENTIALS, {"pid": other, "u": "second.user", "p": "temporary-passphrase-31"}, staff.token),
    ]
    for query, variables, bearer in calls:
        headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
        response = await api.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200
        assert_protective(response)
    response = await api.client.post(
        "/graphql",
        json={
            "query": "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { sessionToken } }",
            "variables": {"u": "avery.q", "p": STRONG_PASSWORD},
        },
    )
    session = response.json()["data"]["login"]["sessionToken"]
    assert session
    assert_protective(response)
    response = await api.client.post(
        "/graphql",
        json={"query": CHANGE_PASSWORD, "variables": {"c": STRONG_PASSWORD, "n": "a-brand-new-passphrase-9"}},
        headers={"authorization": f"Bearer {session}"},
    )
    assert response.json()["data"]["changePassword"]["sessionToken"]
    assert_protective(response)
    assert pid


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("post", {"content": b"x" * 200_000, "headers": {"content-type": "application/json"}}),
        ("post", {"json": [{"query": "{ __typename }"}]}),
        ("post", {"content": b"{broken", "headers": {"content-type": "application/json"}}),
        ("get", {"params": {"query": '{ tokenInfo(token: "x") { valid } }'}}),
        ("get", {"url": "/healthz"}),
        ("get", {"url": "/no/such/path"}),
        ("post", {"json": {"query": "{ onboarding { totalCount } }"}}),
    ],
    ids=["413", "batch-400", "bad-json-400", "get-400", "healthz", "404", "unauthenticated"],
)
async def test_error_and_other_responses_carry_the_headers_too(
    api: Api, method: str, kwargs: dict[str, Any]
) -> None:
    """TOK-9: the middleware adds the headers to every response, refusals included."""
    url = kwargs.pop("url", "/graphql")
    response = await getattr(api.client, method)(url, **kwargs)
    assert response.status_code < 500
    assert_protective(response)


async def test_link_page_sends_no_referrer(api: Api) -> None:
    """TOK-9: the (development) page that opens the emailed link answers with
    Referrer-Policy: no-referrer, so nothing it loads learns its URL."""
    response = await api.client.get("/portal/activate")
    assert response.headers["referrer-policy"] == "no-referrer"
    if response.status_code == 200:
        assert '<meta name="referrer" content="no-referrer">' in response.text


async def test_logged_in_session_answer_is_not_cached(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """SESS-1: the login answer carrying a fresh session token is no-store even when the
    login fails (no cached INVALID_CREDENTIALS either)."""
    response = await api.client.post(
        "/graphql",
        json={
            "query": "mutation { login(input: {username: \"nobody\", password: \"wrong-password-1\"}) { sessionToken } }"
        },
    )
    assert_protective(response)
    assert (await login(api, "nobody", "wrong-password-1"))["sessionToken"] is None
