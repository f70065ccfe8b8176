"""The fast completion of plain fields (graph/execution.py) answers exactly what
graphql-core's generic completion answers: the same bytes, data and errors.

Two parts. The real app, twice over the same database (``create_app`` with and without
``fast_execution``): many query shapes of the Onboarding Tool and around it, answers
compared byte for byte. Then a small Strawberry schema whose objects break every rule the
fast path must hand back to graphql-core (nulls in non-null positions, values of the
wrong type, exceptions, awaitables, failing is_type_of, bad list items), executed with
FastExecutor and with Strawberry's own execution context, results compared."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, NewType

import httpx
import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph import execution
from graph.app import create_app
from graph.execution import FastExecutor
from models import DeliveryStatus, LinkToken
from tests.conftest import Api, Staff
from tests.graph.test_onboarding_list import populate

# --- the real app -------------------------------------------------------------------

PATIENT_FIELDS = """
  __typename id chartNumber firstName lastName dateOfBirth email zipCode preferredLanguage
  mobilePhone smsConsent chartStatus portalEnabled portalStatus emailSharedWith
  account { __typename username mustChangePassword lastLoginAt locked }
  lastInvitation { __typename id channel sentTo sentAt expiresAt usedAt revokedAt
    revokeReason deliveryStatus deliveryDetail selfService reminder }
"""

FULL = (
    """query Full($first: Int, $after: String, $last: Int, $before: String,
  $filter: OnboardingFilter) {
  onboarding(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
    __typename
    edges { __typename cursor node { """
    + PATIENT_FIELDS
    + """ } }
    pageInfo { __typename startCursor endCursor hasNextPage hasPreviousPage }
    totalCount
    statusCounts { __typename status count }
  }
}"""
)

FRAGMENTS = """
fragment Names on Patient { firstName lastName ...Contact }
fragment Contact on Patient { email mobilePhone smsConsent }
fragment Login on PortalAccount { username locked }
query Fragments($first: Int) {
  onboarding(first: $first) {
    edges {
      cursor
      node {
        ...Names
        ... on Patient { id portalStatus account { ...Login lastLoginAt } }
        ... on Node { id }
        ... { chartNumber }
        account { mustChangePassword ...Login }
      }
    }
  }
}"""

ALIASES = """query Aliases($first: Int) {
  list: onboarding(first: $first) {
    rows: edges {
      c: cursor
      p: node {
        given: firstName
        again: firstName
        firstName
        firstName
        kind: __typename
        status: portalStatus
        login: account { name: username u2: username }
        link: lastInvitation { to: sentTo at: sentAt state: deliveryStatus }
      }
    }
  }
  again: onboarding(first: 3) { edges { node { id firstName } } }
}"""

DIRECTIVES = """query Directives($first: Int, $withAccount: Boolean!, $noEmail: Boolean!,
  $withLink: Boolean!) {
  onboarding(first: $first) {
    edges {
      node {
        id
        email @skip(if: $noEmail)
        account @include(if: $withAccount) { username locked }
        ...Link @include(if: $withLink)
        ... on Patient @skip(if: $withLink) { zipCode chartStatus }
        lastName @include(if: $withAccount) @skip(if: $noEmail)
      }
    }
    totalCount @skip(if: $noEmail)
  }
}
fragment Link on Patient { lastInvitation { sentTo channel usedAt } }"""

NESTED = """query Nested($first: Int) {
  onboarding(first: $first) {
    edges {
      node {
        id
        firstName
        invitations(first: 2) {
          edges { cursor node { id channel sentTo sentAt deliveryStatus reminder } }
          pageInfo { hasNextPage hasPreviousPage endCursor }
        }
      }
    }
  }
}"""

NODES = """query Nodes($id: ID!, $ids: [ID!]!) {
  node(id: $id) {
    __typename
    id
    ... on Patient { firstName portalStatus account { username } lastInvitation { id } }
    ... on Invitation { sentTo channel }
  }
  nodes(ids: $ids) {
    __typename
    ... on Node { id }
    ... on Patient { lastName dateOfBirth emailSharedWith }
    ... on Invitation { sentTo expiresAt deliveryStatus selfService }
  }
  patient(id: $id) { id chartNumber lastInvitation { sentTo revokeReason } }
}"""

# Errors: a refused argument on a non-null root field (data: null), the same refusal
# below non-null positions (nulls propagate to the root), and below a nullable one
# beside a good root field (partial data).
ERRORS_ROOT = """{ onboarding(first: 0) { edges { cursor } } }"""
ERRORS_CURSOR = """{ onboarding(first: 2, after: "not-a-cursor") { edges { cursor } } }"""
ERRORS_DEEP = """query($first: Int) {
  onboarding(first: $first) {
    edges { node { id invitations(first: 0) { edges { cursor } } } }
  }
}"""
ERRORS_PARTIAL = """query($id: ID!, $first: Int) {
  patient(id: $id) { id firstName invitations(first: 0) { edges { cursor } } }
  onboarding(first: $first) { edges { node { id firstName account { username } } } }
  nodes(ids: ["nonsense", $id]) { __typename ... on Patient { id } }
}"""


async def spice_up_links(practice_id: int) -> None:
    """Links in every delivery state and channel, used and reminders, so that each enum
    and nullable field of Invitation takes several values."""
    now = datetime.now(UTC)
    ids = (
        await LinkToken.filter(practice_id=practice_id).order_by("id").values_list("id", flat=True)
    )
    assert len(ids) > 12, "populate() wrote too few links"
    await LinkToken.filter(id__in=ids[0::4]).update(
        delivery_status=DeliveryStatus.FAILED, delivery_detail="550 5.1.1 no such user"
    )
    await LinkToken.filter(id__in=ids[1::4]).update(
        delivery_status=DeliveryStatus.SENT, channel="sms", is_reminder=True
    )
    await LinkToken.filter(id__in=ids[2::4]).update(used_at=now - timedelta(hours=1))


@pytest.fixture
async def plain(api: Api) -> Any:
    """The same app, settings and database with graphql-core's generic completion."""
    app = create_app(api.settings, manage_database=False, fast_execution=False)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
        yield client
    await app.state.services.background.drain()
    app.state.services.hasher.close()
    app.state.services.limiter.close()


async def both(
    api: Api, plain: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    fast = await api.client.post("/graphql", content=body, headers=headers)
    generic = await plain.post("/graphql", content=body, headers=headers)
    assert fast.status_code == generic.status_code
    assert fast.content == generic.content, (query, variables)
    return fast.json()  # type: ignore[no-any-return]


async def test_the_real_app_answers_the_same_bytes_with_and_without_the_fast_path(
    api: Api, plain: httpx.AsyncClient, staff: Staff
) -> None:
    await populate(staff.practice_id, 160, seed=15, prefix="F")
    await spice_up_links(staff.practice_id)
    token = staff.token

    first = await both(api, plain, token, FULL, {"first": 50})
    page = first["data"]["onboarding"]
    assert len(page["edges"]) == 50 and "errors" not in first
    nodes = [e["node"] for e in page["edges"]]
    # The shapes cover what they claim to: accounts and links present and absent,
    # several statuses and delivery states.
    assert any(n["account"] for n in nodes) and any(n["account"] is None for n in nodes)
    assert any(n["lastInvitation"] for n in nodes) and any(not n["lastInvitation"] for n in nodes)
    assert len({n["portalStatus"] for n in nodes}) >= 3
    end = page["pageInfo"]["endCursor"]

    cursor_pages = [
        {"first": 50, "after": end},
        {"last": 20, "before": end},
        {"first": 30, "filter": {"status": ["ACTIVE", "NOT_INVITED", "INVITED"]}},
        {"first": 30, "filter": {"hasEmail": False}},
        {"first": 30, "filter": {"reachableBy": ["SMS", "NONE"]}},
        {"first": 30, "filter": {"search": nodes[3]["lastName"][:3]}},
        {"first": 200},  # the whole practice (160 rows)
    ]
    for variables in cursor_pages:
        answer = await both(api, plain, token, FULL, variables)
        assert "errors" not in answer, answer

    links = [n["lastInvitation"] for n in nodes if n["lastInvitation"]]
    assert {link["deliveryStatus"] for link in links} >= {"FAILED", "SENT"}
    shapes: list[tuple[str, dict[str, Any]]] = [
        (FRAGMENTS, {"first": 40}),
        (ALIASES, {"first": 40}),
        (NESTED, {"first": 25}),
        (
            NODES,
            {
                "id": nodes[0]["id"],
                "ids": [n["id"] for n in nodes[:6]] + [link["id"] for link in links[:4]],
            },
        ),
        (ERRORS_ROOT, {}),
        (ERRORS_CURSOR, {}),
        (ERRORS_DEEP, {"first": 5}),
        (ERRORS_PARTIAL, {"id": nodes[1]["id"], "first": 5}),
    ]
    for with_account in (True, False):
        for no_email in (True, False):
            for with_link in (True, False):
                shapes.append(
                    (
                        DIRECTIVES,
                        {
                            "first": 20,
                            "withAccount": with_account,
                            "noEmail": no_email,
                            "withLink": with_link,
                        },
                    )
                )
    answers = [await both(api, plain, token, q, v) for q, v in shapes]

    # The error shapes did produce errors and propagated nulls as intended.
    root, cursor, deep, partial = answers[4:8]
    assert root["data"] is None and root["errors"][0]["path"] == ["onboarding"]
    assert cursor["data"] is None and cursor["errors"][0]["path"] == ["onboarding"]
    assert deep["data"] is None and len(deep["errors"]) >= 1
    assert partial["data"]["patient"] is None and partial["data"]["onboarding"]["edges"]
    assert {tuple(e["path"]) for e in partial["errors"]} >= {("patient", "invitations")}

    # And the fast path was the one answering: the app's schema runs FastExecutor, and
    # the page's plain fields were compiled for it (and not left to the generic path).
    [graphql_app] = [r.endpoint for r in api.app.routes if getattr(r, "path", "") == "/graphql"][:1]
    assert graphql_app.schema.execution_context_class is FastExecutor
    specs = execution._SPECS[graphql_app.schema._schema]
    by_name = {(parent.name, name): spec.kind for (parent, name), spec in specs.items()}
    assert by_name[("Patient", "firstName")] == execution._LEAF
    assert by_name[("Patient", "account")] == execution._OBJECT
    assert by_name[("PatientConnection", "edges")] == execution._LIST
    assert by_name[("PatientConnection", "totalCount")] == execution._GENERIC
    # Patients and their accounts complete in their parent's code (exact instances).
    origins = {(parent.name, name): spec.origin for (parent, name), spec in specs.items()}
    assert origins[("PatientEdge", "node")] is not None
    assert origins[("Patient", "account")] is not None
    # ... and ran as compiled plans: one per field set, the Patient's among them.
    compiled = execution._CODE[graphql_app.schema._schema]
    assert any(shape[0].name == "Patient" for shape in compiled)
    # Requests of an operation whose field sets no variable can change share their
    # sub-selection plans; Directives (@skip/@include on variables) builds its own per
    # request, which is what let its eight variants above answer as graphql-core does.
    shared = {
        op.name.value: plans
        for op, plans in execution._SHARED[graphql_app.schema._schema].values()
        if op.name
    }
    assert shared["Full"] and shared["Fragments"] and shared["Directives"] is None


# --- a schema that breaks every rule ---------------------------------------------------


class Color(Enum):
    RED = "red"
    GREEN = "green"


def odd_only(value: int) -> int | None:
    # A custom scalar whose coercion gives null for even numbers: graphql-core raises.
    return value if value % 2 else None


Odd = NewType("Odd", int)
SCALARS = StrawberryConfig(
    scalar_map={
        Odd: strawberry.scalar(
            name="Odd", serialize=odd_only, parse_value=int, description="Odd numbers only."
        )
    }
)


@strawberry.interface
class Thing:
    name: str


@strawberry.type
class Leafy(Thing):
    name: str
    count: int
    maybe_count: int | None
    color: Color
    maybe_color: Color | None
    when: datetime
    day: date | None
    odd: Odd
    tags: list[str]
    maybe_tags: list[str | None] | None
    flags: list[bool] | None


@strawberry.type
class Box:
    label: str
    leaf: Leafy
    maybe_leaf: Leafy | None
    leaves: list[Leafy]
    maybe_leaves: list[Leafy | None] | None
    thing: Thing | None

    @strawberry.field
    async def computed(self) -> Leafy | None:
        return self.maybe_leaf

    @strawberry.field
    def echo(self, text: str) -> str:
        return text


def good_leaf(n: int) -> Leafy:
    return Leafy(
        name=f"leaf {n}",
        count=n,
        maybe_count=None if n % 2 else n,
        color=Color.RED if n % 2 else Color.GREEN,
        maybe_color=None,
        when=datetime(2026, 1, 2, 3, 4, n % 60, tzinfo=UTC),
        day=date(2026, 1, 1 + n % 28),
        odd=2 * n + 1,
        tags=[f"t{n}", "x"],
        maybe_tags=[None, "y"],
        flags=[True, False],
    )


def ready(value: Any) -> Any:
    """An awaitable holding the value (a future: unlike a coroutine, one that a query
    does not select may stay unawaited)."""
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def broken_leaf(kind: str) -> Leafy:
    leaf = good_leaf(7)
    if kind == "null-name":
        leaf.name = None  # type: ignore[assignment]
    elif kind == "missing-name":
        del leaf.name
    elif kind == "missing-maybe-count":
        del leaf.maybe_count
    elif kind == "string-count":
        leaf.count = "seven"  # type: ignore[assignment]
    elif kind == "huge-count":
        leaf.count = 2**40
    elif kind == "float-count":
        leaf.count = 7.0  # type: ignore[assignment]
    elif kind == "bool-count":
        leaf.count = True
    elif kind == "bad-color":
        leaf.color = "purple"  # type: ignore[assignment]
    elif kind == "raw-color":
        leaf.color = "RED"  # type: ignore[assignment]
    elif kind == "even-odd":
        leaf.odd = 4
    elif kind == "exception-name":
        leaf.name = ValueError("a resolver returned this")  # type: ignore[assignment]
    elif kind == "awaitable-name":
        leaf.name = ready("awaited name")  # type: ignore[assignment]
    elif kind == "awaitable-count":
        leaf.maybe_count = ready(3)  # type: ignore[assignment]
    elif kind == "int-name":
        leaf.name = 12  # type: ignore[assignment]
    elif kind == "bad-tags":
        leaf.tags = ["a", None, "c"]  # type: ignore[list-item]
    elif kind == "not-a-list":
        leaf.tags = 5  # type: ignore[assignment]
    elif kind == "string-as-list":
        leaf.maybe_tags = "abc"  # type: ignore[assignment]
    elif kind == "awaitable-tag":
        leaf.maybe_tags = ["a", ready("b")]  # type: ignore[list-item]
    elif kind == "bad-flags":
        leaf.flags = [True, "no", 2]  # type: ignore[list-item]
    elif kind == "bad-day":
        leaf.day = "2026-01-01"  # type: ignore[assignment]
    return leaf


KINDS = [
    "good",
    "null-name",
    "missing-name",
    "missing-maybe-count",
    "string-count",
    "huge-count",
    "float-count",
    "bool-count",
    "bad-color",
    "raw-color",
    "even-odd",
    "exception-name",
    "awaitable-name",
    "awaitable-count",
    "int-name",
    "bad-tags",
    "not-a-list",
    "string-as-list",
    "awaitable-tag",
    "bad-flags",
    "bad-day",
]


def awaiting_leaf(n: int) -> Leafy:
    leaf = good_leaf(n)
    leaf.__await__ = lambda: iter(())  # type: ignore[method-assign]
    return leaf


def build_boxes() -> list[Box]:
    """Fresh objects per execution (awaitables can be awaited once)."""
    boxes = []
    for n, kind in enumerate(KINDS):
        leaf = broken_leaf(kind)
        boxes.append(
            Box(
                label=f"box {n}",
                leaf=leaf,
                maybe_leaf=broken_leaf(kind),
                leaves=[good_leaf(1), broken_leaf(kind), good_leaf(2)],
                maybe_leaves=[None, broken_leaf(kind)],
                thing=broken_leaf(kind),
            )
        )
    # Object positions holding the wrong things.
    odd_boxes = [
        Box(
            label="null leaf", leaf=None, maybe_leaf=None, leaves=[], maybe_leaves=None, thing=None
        ),  # type: ignore[arg-type]
        Box(
            label="wrong type",
            leaf="not a leaf",
            maybe_leaf=Box,
            leaves=[good_leaf(3), 5],
            maybe_leaves=[good_leaf(4), "x"],
            thing=None,
        ),  # type: ignore[arg-type,list-item]
        Box(
            label="null items",
            leaf=good_leaf(5),
            maybe_leaf=None,
            leaves=[good_leaf(6), None],
            maybe_leaves=[None, None],
            thing=None,
        ),  # type: ignore[list-item]
        Box(
            label="exception",
            leaf=RuntimeError("boom"),
            maybe_leaf=ValueError("bang"),
            leaves=[ValueError("item")],
            maybe_leaves=[KeyError("k")],
            thing=None,
        ),  # type: ignore[arg-type,list-item]
        Box(
            label="awaitables",
            leaf=ready(good_leaf(8)),
            maybe_leaf=ready(None),
            leaves=[ready(good_leaf(9)), good_leaf(10)],
            maybe_leaves=ready([good_leaf(11)]),
            thing=ready(good_leaf(12)),
        ),  # type: ignore[arg-type,list-item]
        Box(
            label="not iterable",
            leaf=good_leaf(13),
            maybe_leaf=None,
            leaves=7,
            maybe_leaves=7,
            thing=None,
        ),  # type: ignore[arg-type]
        # Exact instances of the type's class that are still not plain: cast to another
        # type (is_type_of answers False), an __await__ set on the instance (graphql-core
        # awaits it and fails).
        Box(
            label="cast and awaitable-looking",
            leaf=strawberry.cast(Box, good_leaf(14)),
            maybe_leaf=awaiting_leaf(15),
            leaves=[strawberry.cast(Box, good_leaf(16))],
            maybe_leaves=[awaiting_leaf(17)],
            thing=strawberry.cast(Box, good_leaf(18)),
        ),
    ]
    return boxes + odd_boxes


@strawberry.type
class BrokenQuery:
    @strawberry.field
    def boxes(self) -> list[Box | None]:
        return build_boxes()  # type: ignore[return-value]

    @strawberry.field
    def strict_boxes(self) -> list[Box]:
        return build_boxes()

    @strawberry.field
    async def one(self, index: int) -> Box:
        return build_boxes()[index]


LEAF_SELECTION = """
  __typename name count maybeCount color maybeColor when day odd tags maybeTags flags
  alias: name again: count
"""
BROKEN_QUERIES = [
    "{ boxes { label leaf { " + LEAF_SELECTION + " } } }",
    "{ boxes { label maybeLeaf { " + LEAF_SELECTION + " } } }",
    "{ boxes { label leaves { " + LEAF_SELECTION + " } } }",
    "{ boxes { label maybeLeaves { " + LEAF_SELECTION + " } } }",
    "{ boxes { label computed { name count tags } } }",
    "{ boxes { label thing { __typename name ... on Leafy { count color } } } }",
    "{ strictBoxes { label maybeLeaf { name maybeCount maybeTags } } }",
    "{ strictBoxes { label leaf { name } } }",
    '{ boxes { echo(text: "hi") label leaf { count } } }',
    "query($i: Int!, $with: Boolean!) { one(index: $i) { label"
    " leaf @include(if: $with) { name count } maybeLeaves { name @skip(if: $with) color } } }",
]


class Touch(SchemaExtension):
    """A schema extension with a resolve hook: graphql-core middleware."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        return _next(root, info, *args, **kwargs)


@pytest.mark.parametrize("with_middleware", [False, True])
async def test_fallbacks_answer_as_graphql_core_does(with_middleware: bool) -> None:
    extensions = [Touch] if with_middleware else []
    fast = strawberry.Schema(
        query=BrokenQuery,
        execution_context_class=FastExecutor,
        extensions=extensions,
        config=SCALARS,
    )
    generic = strawberry.Schema(
        query=BrokenQuery,
        execution_context_class=StrawberryGraphQLCoreExecutionContext,
        extensions=extensions,
        config=SCALARS,
    )
    runs: list[tuple[str, dict[str, Any] | None]] = [(q, None) for q in BROKEN_QUERIES[:-1]]
    for index in range(len(KINDS) + 7):
        for with_ in (True, False):
            runs.append((BROKEN_QUERIES[-1], {"i": index, "with": with_}))
    errors_seen = 0
    for query, variables in runs:
        a = await fast.execute(query, variable_values=variables)
        b = await generic.execute(query, variable_values=variables)
        a_errors = [e.formatted for e in a.errors or []]
        b_errors = [e.formatted for e in b.errors or []]
        assert json.dumps(a.data, default=str) == json.dumps(b.data, default=str), query
        assert a_errors == b_errors, (query, variables)
        errors_seen += len(a_errors)
    # The broken values did break things (the comparison is not of empty answers).
    assert errors_seen > 100
