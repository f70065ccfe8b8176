"""Issue 10, item 1: validation linear in the document (fragment chains), a cost limit
computed before execution, and mutations that can mail running at most once per request.
Complements test_graphql_limits.py (depth, aliases, credential batches)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.conftest import Api, Mailbox, Staff
from tests.helpers import enabled_patient
from tests.security.support import table_rows
from tests.security.test_graphql_limits import assert_refused


def fragment_chain(n: int, body: str = "__typename", operation: str = "query") -> str:
    """Each fragment spreads the next twice: 2^n fields once expanded, under 60 bytes a
    link. Walked as a tree, n=20 froze the server for 12 s."""
    parts = [f"{operation} {{ ...F0 }}"]
    parts += [f"fragment F{i} on Query {{ {body} ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    parts.append(f"fragment F{n} on Query {{ {body} }}")
    return " ".join(parts)


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - started


async def test_fragment_chain_is_refused_at_once_and_a_cheap_query_is_not_delayed(
    api: Api, staff: Staff
) -> None:
    """The issue's reproduction at n=40: refused in milliseconds, and a cheap query sent
    alongside (same event loop, as on one server process) is not held up."""
    chain = fragment_chain(40)
    assert len(chain.encode()) < 2_100
    cheap = api.client.post(
        "/graphql",
        json={"query": "{ onboarding(first: 1) { totalCount } }"},
        headers={"authorization": f"Bearer {staff.token}"},
    )
    (refused, chain_seconds), (answered, cheap_seconds) = await asyncio.gather(
        timed(api.client.post("/graphql", json={"query": chain})), timed(cheap)
    )
    assert_refused(refused, fragment="exceeds maximum operation depth")
    assert answered.json()["data"]["onboarding"]["totalCount"] == 0
    assert chain_seconds < 1.0, chain_seconds
    assert cheap_seconds < 1.0, cheap_seconds
    health, health_seconds = await timed(api.client.get("/healthz"))
    assert health.status_code == 200 and health_seconds < 1.0


async def test_fragment_chain_within_the_nesting_cap_is_refused_by_cost(api: Api) -> None:
    """n=20 nests little enough to validate, but expands to a million fields: the cost,
    computed from the memoised fragments, refuses it before any resolver runs."""
    response, seconds = await timed(
        api.client.post("/graphql", json={"query": fragment_chain(20)})
    )
    [error] = assert_refused(response, fragment="rows")
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert seconds < 1.0, seconds


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a: __typename", "aliases found"),
        ('tokenInfo(token: "abc") { valid }', "At most one credential operation"),
    ],
    ids=["aliases", "credential"],
)
async def test_fragment_chain_counts_every_spread(api: Api, body: str, message: str) -> None:
    """Aliases and credential fields are counted with their multiplicity (2^n at n=15),
    without walking the expansion."""
    response, seconds = await timed(
        api.client.post("/graphql", json={"query": fragment_chain(15, body)})
    )
    assert_refused(response, fragment=message)
    assert seconds < 1.0, seconds


def searched_pages(count: int, size: int, search: str | None = "quinn avery 02139") -> str:
    flt = f', filter: {{search: "{search}"}}' if search else ""
    return "{ " + " ".join(
        f"p{i}: onboarding(first: {size}{flt}) {{ edges {{ node {{ id lastName }} }} }}"
        for i in range(count)
    ) + " }"


async def test_many_large_pages_are_refused_before_execution(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 aliased searched pages of 200 (5.6 s each on a 22,000-patient practice) are
    refused before a page is read; one searched page of 200 and a few small pages pass."""
    from onboarding.listing import PatientReader

    pages_read = 0
    real_page = PatientReader.page

    async def counting_page(self: PatientReader, *args: Any, **kwargs: Any) -> Any:
        nonlocal pages_read
        pages_read += 1
        return await real_page(self, *args, **kwargs)

    monkeypatch.setattr(PatientReader, "page", counting_page)
    auth = {"authorization": f"Bearer {staff.token}"}
    over = await api.client.post("/graphql", json={"query": searched_pages(30, 200)}, headers=auth)
    [error] = assert_refused(over, fragment="rows")
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert pages_read == 0

    for query in (searched_pages(1, 200), searched_pages(4, 50, search=None)):
        ok = await api.gql(query, token=staff.token)
        assert "errors" not in ok, ok
    assert pages_read == 5


async def test_cost_uses_the_request_variables(api: Api, staff: Staff) -> None:
    """A page size in a variable is costed with the variable's value."""
    query = (
        "query($n: Int) { a: onboarding(first: $n) { totalCount } "
        "b: onboarding(first: $n) { totalCount } c: onboarding(first: $n) { totalCount } "
        "d: onboarding(first: $n) { totalCount } e: onboarding(first: $n) { totalCount } }"
    )
    small = await api.gql(query, {"n": 10}, staff.token)
    assert small["data"]["a"]["totalCount"] == 0
    large = await api.gql(query, {"n": 200}, staff.token)
    assert large["data"] is None
    assert large["errors"][0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"


@pytest.mark.parametrize("settings_overrides", [{"max_bulk_ids": 3}])
async def test_bulk_actions_share_one_patient_budget(api: Api, staff: Staff) -> None:
    """Bulk mutations are weighted by the patients they can touch: ids given, or the bulk
    cap for a filter; together at most max_bulk_ids per request."""
    ids = [await enabled_patient(api, staff.token, n=n) for n in (1, 2)]
    both = (
        "mutation($a: [ID!]!, $b: [ID!]!) { "
        "x: disablePortal(input: {patientIds: $a}) { userErrors { code } } "
        "y: enablePortal(input: {patientIds: $b}) { userErrors { code } } }"
    )
    refused = await api.gql(both, {"a": ids, "b": ids}, staff.token)
    assert refused["data"] is None
    assert refused["errors"][0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert all(p["portal_enabled"] for p in await table_rows("patient"))
    by_filter = (
        "mutation($a: [ID!]!) { x: disablePortal(input: {patientIds: $a}) { userErrors { code } } "
        "y: enablePortal(input: {filter: {hasEmail: true}}) { userErrors { code } } }"
    )
    refused = await api.gql(by_filter, {"a": ids[:1]}, staff.token)
    assert refused["errors"][0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    allowed = await api.gql(both, {"a": ids[:1], "b": ids[1:]}, staff.token)
    assert "errors" not in allowed, allowed


MAILING_REPEATS = {
    "aliases": (
        "mutation($ids: [ID!]!) { "
        + " ".join(
            f"s{i}: sendInvitation(input: {{patientIds: $ids}}) {{ userErrors {{ code }} }}"
            for i in range(3)
        )
        + " }"
    ),
    "fragment_twice": (
        "mutation($ids: [ID!]!) { ...S ...S } fragment S on Mutation { "
        "sendInvitation(input: {patientIds: $ids}) { userErrors { code } } }"
    ),
    "fragment_aliased": (
        "mutation($ids: [ID!]!) { a: sendInvitation(input: {patientIds: $ids}) "
        "{ userErrors { code } } ...S } fragment S on Mutation { "
        "b: sendInvitation(input: {patientIds: $ids}) { userErrors { code } } }"
    ),
}


@pytest.mark.parametrize("shape", list(MAILING_REPEATS), ids=list(MAILING_REPEATS))
async def test_a_mutation_that_mails_runs_once_per_request(
    api: Api, staff: Staff, mailbox: Mailbox, shape: str
) -> None:
    """30 aliased sendInvitation in one request mailed each patient 30 times; now any
    repeat of a mailing mutation refuses the whole document and nothing is sent."""
    pid = await enabled_patient(api, staff.token)
    response = await api.client.post(
        "/graphql",
        json={"query": MAILING_REPEATS[shape], "variables": {"ids": [pid]}},
        headers={"authorization": f"Bearer {staff.token}"},
    )
    assert_refused(response, fragment="may run at most once per request")
    await api.deliver()
    assert mailbox.messages == []
    assert await table_rows("outbox_message") == []

    once = await api.gql(
        "mutation($ids: [ID!]!) { sendInvitation(input: {patientIds: $ids}) "
        "{ results { userErrors { code } } } }",
        {"ids": [pid]},
        staff.token,
    )
    assert once["data"]["sendInvitation"]["results"][0]["userErrors"] == []
    await api.deliver()
    assert len(mailbox.messages) == 1


async def test_graphiql_introspection_still_validates(api: Api) -> None:
    """The nesting cap leaves room for GraphiQL's own (deep) introspection query."""
    from graphql import get_introspection_query

    response = await api.client.post("/graphql", json={"query": get_introspection_query()})
    assert response.status_code == 200
    assert response.json()["data"]["__schema"]["queryType"]["name"] == "Query"
