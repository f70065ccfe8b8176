"""SECURITY.md section GQL: GraphQL hardening (depth, amount, aliases, batching, tokens,
masked errors, GET). Introspection and suggestions in production: test_production.py;
rate limits: test_rate_limits.py; authorization: test_authorization.py."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import Api, Mailbox, Staff
from tests.helpers import ENABLE, STRONG_PASSWORD, enabled_patient
from tests.security.support import (
    TOKEN_INFO,
    active_patient,
    invited,
    login,
    redeem,
    table_rows,
)

LEAK_MARKERS = ("Traceback", "SELECT", "INSERT", "sqlite", "asyncpg", "tortoise", 'File "', "line ")


def assert_refused(response: Any, *, fragment: str | None = None) -> list[dict[str, Any]]:
    """Refused as a GraphQL error (or 4xx), never a 500, never executed (data null)."""
    assert response.status_code in (200, 400, 413), response.status_code
    body = response.json()
    assert body.get("data") is None
    assert body["errors"]
    if fragment:
        assert any(fragment in e["message"] for e in body["errors"]), body
    return body["errors"]


async def audit_actions() -> list[str]:
    return [row["action"] for row in await table_rows("audit_event")]


def login_field(alias: str, username: str, password: str) -> str:
    return (
        f'{alias}: login(input: {{username: "{username}", password: "{password}"}}) '
        "{ sessionToken userErrors { code } }"
    )


def redeem_field(alias: str, token: str) -> str:
    return (
        f'{alias}: redeemToken(input: {{token: "{token}", username: "{alias}.user", '
        f'password: "{STRONG_PASSWORD}"}}) {{ account {{ username }} userErrors {{ code }} }}'
    )


async def test_aliased_redeem_batch_is_refused_and_the_real_token_survives(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """GQL-2: redeemToken repeated under aliases (one valid token among guesses) is refused
    during validation; nothing is executed and the valid token stays usable."""
    _, token = await invited(api, staff.token, mailbox)
    guesses = [token[:-2] + suffix for suffix in ("AA", "AB", "AC")]
    fields = [redeem_field(f"r{i}", t) for i, t in enumerate([*guesses, token])]
    before = await audit_actions()
    response = await api.client.post("/graphql", json={"query": "mutation { " + " ".join(fields) + " }"})

    assert_refused(response, fragment="At most one credential operation")
    assert await audit_actions() == before
    assert await table_rows("portal_account") == []
    info = await api.gql(TOKEN_INFO, {"t": token})
    assert info["data"]["tokenInfo"]["valid"] is True
    assert (await redeem(api, token, "avery.q"))["userErrors"] == []


FRAGMENT_SHAPES = {
    "named_fragments": (
        "mutation { ...A } fragment A on Mutation { "
        + login_field("x", "patient1", "guess-one-aaaaaa")
        + " ...B } fragment B on Mutation { "
        + login_field("y", "patient1", "guess-two-bbbbbb")
        + " }"
    ),
    "inline_fragments": (
        "mutation { ... on Mutation { "
        + login_field("x", "patient1", "guess-one-aaaaaa")
        + " } ... on Mutation { "
        + login_field("y", "patient1", "guess-two-bbbbbb")
        + " } }"
    ),
    "same_fragment_twice": (
        "mutation { ...A ...A } fragment A on Mutation { "
        + login_field("x", "patient1", "guess-one-aaaaaa")
        + " }"
    ),
    "two_operations": (
        "mutation A { "
        + login_field("x", "patient1", "guess-one-aaaaaa")
        + " } mutation B { "
        + login_field("y", "patient1", "guess-two-bbbbbb")
        + " }"
    ),
    "different_fields_no_alias": (
        'mutation { login(input: {username: "patient1", password: "guess-one-aaaaaa"}) '
        "{ sessionToken } requestSelfReset(input: {email: \"a@example.com\", lastName: \"Q\", "
        'dateOfBirth: "1980-04-12", zipCode: "02139"}) { ok } }'
    ),
    "plain_aliases": (
        "mutation { "
        + " ".join(login_field(f"a{i}", "patient1", f"guess-{i}-cccccccc") for i in range(20))
        + " }"
    ),
}


@pytest.mark.parametrize("shape", list(FRAGMENT_SHAPES), ids=list(FRAGMENT_SHAPES))
async def test_hidden_login_batches_are_refused_before_execution(
    api: Api, staff: Staff, mailbox: Mailbox, shape: str
) -> None:
    """GQL-2 (SPEC 6): login batches hidden in aliases, named or inline fragments, repeated
    spreads, several operations or mixed credential fields are refused before any
    resolver runs: no failed-login count, no audit event, no rate-limit hit."""
    await active_patient(api, staff.token, mailbox)
    before = await audit_actions()
    hits: list[str] = []
    real_allow = api.services.limiter.allow

    async def counting_allow(scope: str, *keys: str) -> bool:
        hits.append(scope)
        return await real_allow(scope, *keys)

    api.services.limiter.allow = counting_allow  # type: ignore[method-assign]
    body: dict[str, Any] = {"query": FRAGMENT_SHAPES[shape]}
    if shape == "two_operations":
        body["operationName"] = "A"
    response = await api.client.post("/graphql", json=body)

    assert_refused(response, fragment="At most one credential operation")
    assert hits == []
    assert await audit_actions() == before
    [account] = await table_rows("portal_account")
    assert account["failed_logins"] == 0
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]


async def test_one_credential_operation_is_still_allowed(api: Api) -> None:
    """GQL-2: the rule allows exactly one credential field, plus harmless fields."""
    response = await api.client.post(
        "/graphql",
        json={"query": '{ __typename tokenInfo(token: "abc") { valid } }'},
    )
    assert response.status_code == 200
    assert response.json()["data"]["tokenInfo"]["valid"] is False


async def test_alias_count_is_capped(api: Api) -> None:
    """GQL-2: MaxAliasesLimiter refuses documents with more than max_aliases aliases."""
    limit = api.settings.max_aliases
    ok = "{ " + " ".join(f"a{i}: __typename" for i in range(limit)) + " }"
    over = "{ " + " ".join(f"a{i}: __typename" for i in range(limit + 1)) + " }"
    assert (await api.client.post("/graphql", json={"query": ok})).json()["data"]
    assert_refused(await api.client.post("/graphql", json={"query": over}), fragment="aliases")


async def test_http_batching_is_off(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """GQL-3: a JSON array of operations is refused (Strawberry batching stays disabled)."""
    await active_patient(api, staff.token, mailbox)
    before = await audit_actions()
    batch = [
        {"query": "mutation($p: String!) { login(input: {username: \"patient1\", password: $p}) { sessionToken } }",
         "variables": {"p": f"guess-number-{i}-xyz"}}
        for i in range(5)
    ]
    response = await api.client.post("/graphql", json=batch)
    assert response.status_code == 400
    assert "Batching is not enabled" in response.text
    assert await audit_actions() == before


@pytest.mark.parametrize("settings_overrides", [{"max_query_depth": 3}])
async def test_query_depth_is_limited(api: Api, staff: Staff) -> None:
    """GQL-1: QueryDepthLimiter refuses documents deeper than max_query_depth, also when the
    depth hides in fragments, before any resolver runs."""
    deep = "{ onboarding { edges { node { account { username } } } } }"
    hidden = (
        "{ ...A } fragment A on Query { onboarding { ...B } } "
        "fragment B on PatientConnection { edges { node { account { username } } } }"
    )
    for query in (deep, hidden):
        response = await api.client.post(
            "/graphql", json={"query": query}, headers={"authorization": f"Bearer {staff.token}"}
        )
        assert_refused(response, fragment="exceeds maximum operation depth")
    shallow = await api.gql("{ onboarding { totalCount } }", token=staff.token)
    assert shallow["data"]["onboarding"]["totalCount"] == 0


async def test_introspection_depth_bomb_is_refused(api: Api) -> None:
    """GQL-1: a deeply nested introspection query (the schema's only unbounded recursion)
    is refused; introspection is on only in development (GQL-5)."""
    nested = "{ __schema { types { " + "fields { type { " * 15 + "name" + " } }" * 15 + " } } }"
    assert_refused(await api.client.post("/graphql", json={"query": nested}), fragment="depth")


@pytest.mark.parametrize("settings_overrides", [{"max_bulk_ids": 3}])
async def test_amounts_are_capped(api: Api, staff: Staff) -> None:
    """GQL-1 (amount limiting): page sizes above max_page_size and bulk id lists above
    max_bulk_ids are refused with a clear error and change nothing."""
    too_big = api.settings.max_page_size + 1
    result = await api.gql(
        "query($n: Int) { onboarding(first: $n) { totalCount } }", {"n": too_big}, staff.token
    )
    assert result["data"] is None
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    pid = await enabled_patient(api, staff.token, n=1)
    bulk = await api.gql(ENABLE, {"ids": [pid] * 4}, staff.token)
    assert bulk["data"]["enablePortal"]["userErrors"] == [{"code": "INVALID_INPUT"}]
    assert bulk["data"]["enablePortal"]["results"] == []


async def test_token_count_is_capped(api: Api) -> None:
    """GQL-4: MaxTokensLimiter refuses documents with more than max_tokens tokens at parse
    time (the document is well under the body cap)."""
    many = "{ " + " ".join("__typename" for _ in range(api.settings.max_tokens + 10)) + " }"
    assert len(many.encode()) < api.settings.max_body_bytes
    assert_refused(await api.client.post("/graphql", json={"query": many}), fragment="tokens")


async def test_oversized_bodies_get_413_not_500(api: Api) -> None:
    """GQL-4, HASH-5: a 200 KB body is refused with 413 whether it declares its length or
    streams it chunked; nothing reaches the GraphQL layer."""
    padding = "#" + "x" * 200_000 + "\n"
    body = json.dumps({"query": padding + "{ __typename }"}).encode()
    declared = await api.client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    streamed = await api.client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    lying = await api.client.post(
        "/graphql",
        content=body,
        headers={"content-type": "application/json", "content-length": "not-a-number"},
    )
    for response in (declared, streamed, lying):
        assert response.status_code in (400, 413), response.status_code
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_unexpected_errors_are_masked(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GQL-7: a fault inside a resolver reaches the client as "Unexpected error." without
    its message, SQL or traceback; deliberate errors (UNAUTHENTICATED, BAD_USER_INPUT)
    stay readable."""
    import graph.queries

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(
            "SELECT digest FROM link_token WHERE digest = 'abc' -- password=hunter2 at tortoise"
        )

    monkeypatch.setattr(graph.queries, "token_info", broken)
    response = await api.client.post("/graphql", json={"query": TOKEN_INFO, "variables": {"t": "x" * 43}})
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["message"] == "Unexpected error."
    for marker in (*LEAK_MARKERS, "hunter2", "RuntimeError", "link_token"):
        assert marker not in response.text

    unauth = await api.gql("{ onboarding { totalCount } }")
    assert unauth["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


HOSTILE_REQUESTS: dict[str, dict[str, Any]] = {
    "not_json": {"content": b"{not json", "headers": {"content-type": "application/json"}},
    "json_scalar": {"content": b"42", "headers": {"content-type": "application/json"}},
    "no_query": {"json": {"variables": {}}},
    "query_not_string": {"json": {"query": {"a": 1}}},
    "variables_not_object": {"json": {"query": "{ __typename }", "variables": [1, 2]}},
    "wrong_variable_type": {
        "json": {"query": "query($t: String!) { tokenInfo(token: $t) { valid } }", "variables": {"t": {"x": 1}}}
    },
    "nul_bytes": {"json": {"query": "query($t: String!) { tokenInfo(token: $t) { valid } }", "variables": {"t": "\x00" * 50}}},
    "lone_surrogate": {"content": b'{"query": "{ tokenInfo(token: \\"\\ud800\\") { valid } }"}', "headers": {"content-type": "application/json"}},
    "huge_int": {"json": {"query": "{ onboarding(first: 99999999999999999999) { totalCount } }"}},
    "form_encoded": {"content": b"query=%7B__typename%7D", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    "text_plain": {"content": b"{ __typename }", "headers": {"content-type": "text/plain"}},
    "unknown_operation": {"json": {"query": "query A { __typename }", "operationName": "B"}},
    "subscription": {"json": {"query": "subscription { x }"}},
    "bad_id": {"json": {"query": '{ patient(id: "1 OR 1=1; DROP TABLE patient") { id } }'}, "staff": True},
    "huge_id": {"json": {"query": '{ patient(id: "99999999999999999999999999") { id } }'}, "staff": True},
    "bad_cursor": {"json": {"query": '{ onboarding(after: "\'; DROP TABLE patient; --") { totalCount } }'}, "staff": True},
    "huge_audit_cursor": {
        "json": {
            "query": '{ auditEvents(after: "'
            + base64.urlsafe_b64encode(b"audit:99999999999999999999").decode()
            + '") { edges { cursor } } }'
        },
        "staff": True,
    },
    "bad_date": {"json": {"query": 'mutation { requestSelfReset(input: {email: "a@b.c", lastName: "x", dateOfBirth: "1980-02-30", zipCode: "1"}) { ok } }'}},
}


@pytest.mark.parametrize("case", list(HOSTILE_REQUESTS), ids=list(HOSTILE_REQUESTS))
async def test_hostile_requests_never_500_nor_leak(api: Api, staff: Staff, case: str) -> None:
    """GQL-7 (SPEC 6): malformed and hostile requests get a 4xx or a GraphQL error, never a
    500, a traceback, SQL or a masked fault where a clear error is possible."""
    spec = dict(HOSTILE_REQUESTS[case])
    headers = dict(spec.pop("headers", {}))
    if spec.pop("staff", False):
        headers["authorization"] = f"Bearer {staff.token}"
    response = await api.client.post("/graphql", headers=headers, **spec)
    assert response.status_code < 500, response.text
    for marker in LEAK_MARKERS:
        assert marker not in response.text, (marker, response.text)
    if response.status_code == 200 and response.headers["content-type"].startswith("application/json"):
        for error in response.json().get("errors") or []:
            assert error["message"] != "Unexpected error.", (case, error)


@pytest.mark.parametrize(
    "query",
    [
        'mutation { login(input: {username: "patient1", password: "guess-guess-guess"}) { sessionToken } }',
        'mutation { requestSelfReset(input: {email: "avery.quinn1@example.com", lastName: "Quinn1", dateOfBirth: "1980-04-12", zipCode: "02139"}) { ok } }',
        '{ tokenInfo(token: "abcdefabcdefabcdefabcdefabcdefabcdefabcdefa") { valid } }',
        "{ onboarding { totalCount } }",
    ],
    ids=["login", "requestSelfReset", "tokenInfo", "staffQuery"],
)
async def test_no_operations_over_get(api: Api, staff: Staff, mailbox: Mailbox, query: str) -> None:
    """GQL-8: mutations and queries (tokenInfo included) are refused over GET, so tokens and
    passwords never sit in URLs or access logs; nothing executes."""
    await active_patient(api, staff.token, mailbox)
    before = await audit_actions()
    response = await api.client.get(
        "/graphql", params={"query": query}, headers={"authorization": f"Bearer {staff.token}"}
    )
    assert response.status_code in (400, 405), response.status_code
    assert await audit_actions() == before
    await api.deliver()
    assert mailbox.messages == []
    [account] = await table_rows("portal_account")
    assert account["failed_logins"] == 0
