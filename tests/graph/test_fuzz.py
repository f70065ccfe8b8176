"""Issue 10, item 3: a fuzzer over the schema. For every root field, Hypothesis builds
variables from the field's argument types, mixed with hostile values (NUL, huge and
calendar-edge numbers and dates, control and bidirectional characters, wrong JSON
types), sends them over HTTP to the real app as a staff user, and checks that each
answer is typed: no 5xx, no masked fault ("Unexpected error."), nothing internal.

Bounded: PORTAL_FUZZ_EXAMPLES examples per root field (default 20, about 20 s for the
whole schema on one backend); CI runs it on both databases. Hypothesis's example
database is off, so every run draws afresh."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    get_named_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.settings import Settings
from graph.schema import build_schema
from tests.conftest import Api, Staff
from tests.graph.test_bad_input import LEAKS

EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "20"))
SCHEMA = build_schema(Settings(_env_file=None))._schema  # type: ignore[call-arg]

EDGE_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\u202e\u2066",
        "\r\n",
        "' OR 1=1 --",
        "%s%n",
        "{{7*7}}",
        "9999-12-31",
        "0001-01-01",
        "2026-02-29",
        "-1",
        "99999999999999999999999",
        "1",
        "x" * 5000,
        "é" * 200,
        "\U0001f600" * 50,
        "patient1",
        "a@b.c",
    ]
)
TEXT = st.one_of(EDGE_STRINGS, st.text(max_size=80))
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def scalar(named: GraphQLScalarType) -> st.SearchStrategy[Any]:
    if named.name == "Int":
        return st.one_of(
            st.integers(min_value=-(2**31), max_value=2**31 - 1),
            st.sampled_from([0, -1, 2**31 - 1, -(2**31), 2**53, 10**30]),
        )
    if named.name == "Float":
        return st.floats(allow_nan=False, allow_infinity=False)
    if named.name == "Boolean":
        return st.booleans()
    if named.name == "Date":
        return st.one_of(st.dates().map(lambda d: d.isoformat()), EDGE_STRINGS)
    if named.name == "DateTime":
        return st.one_of(st.datetimes().map(lambda d: d.isoformat()), EDGE_STRINGS)
    return TEXT  # String, ID


def value_for(type_: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    if isinstance(type_, GraphQLNonNull):
        return value_for(type_.of_type, depth)
    if isinstance(type_, GraphQLList):
        return st.lists(value_for(type_.of_type, depth + 1), max_size=4)
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from(list(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        required = {
            name: value_for(f.type, depth + 1)
            for name, f in type_.fields.items()
            if isinstance(f.type, GraphQLNonNull)
        }
        optional = {
            name: value_for(f.type, depth + 1)
            for name, f in type_.fields.items()
            if not isinstance(f.type, GraphQLNonNull)
        }
        return st.fixed_dictionaries(required, optional=optional)
    assert isinstance(type_, GraphQLScalarType)
    return scalar(type_)


def hostile(type_: GraphQLInputType) -> st.SearchStrategy[Any]:
    """Mostly well-typed (so resolvers run), sometimes any JSON at all."""
    return st.one_of(value_for(type_), value_for(type_), value_for(type_), ANY_JSON)


def selection(type_: GraphQLOutputType, depth: int = 0) -> str:
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return ""
    if depth >= 3:
        return "{ __typename }"
    parts = ["__typename"]
    for name, f in named.fields.items():
        if f.args and any(isinstance(a.type, GraphQLNonNull) for a in f.args.values()):
            continue
        inner = get_named_type(f.type)
        parts.append(name + (" " + selection(f.type, depth + 1) if isinstance(inner, GraphQLObjectType) else ""))
    return "{ " + " ".join(parts) + " }"


def document(operation: str, name: str, field: GraphQLField) -> str:
    definitions = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
    arguments = ", ".join(f"{a}: ${a}" for a in field.args)
    head = f"{operation}({definitions})" if definitions else operation
    call = f"{name}({arguments})" if arguments else name
    return f"{head} {{ {call} {selection(field.type)} }}"


ROOT_FIELDS = [
    (operation, name, field)
    for operation, root in (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type))
    if root is not None
    for name, field in root.fields.items()
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    budget = "100000/minute"
    return {
        "rate_limit_login": budget,
        "rate_limit_token": budget,
        "rate_limit_self_service": budget,
        "rate_limit_username_check": budget,
    }


@pytest.mark.parametrize(("operation", "name", "field"), ROOT_FIELDS, ids=[f[1] for f in ROOT_FIELDS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
        HealthCheck.too_slow,
    ],
)
@given(data=st.data())
async def test_every_root_field_answers_hostile_variables_with_a_typed_answer(
    api: Api, staff: Staff, operation: str, name: str, field: GraphQLField, data: st.DataObject
) -> None:
    # The app and its staff user live for the whole run of examples (the fixtures are
    # built once per test); rows the examples write accumulate, as in real traffic.
    variables = data.draw(
        st.fixed_dictionaries({a: hostile(arg.type) for a, arg in field.args.items()})
    )
    response = await api.client.post(
        "/graphql",
        json={"query": document(operation, name, field), "variables": variables},
        headers={"authorization": f"Bearer {staff.token}"},
    )
    assert response.status_code < 500, (variables, response.text[:500])
    typed = json.dumps(variables, ensure_ascii=False)
    for leak in LEAKS:
        # graphql-core's coercion errors quote the client's own value back to it.
        if leak not in typed:
            assert leak not in response.text, (leak, variables, response.text[:500])
    if response.status_code == 200:
        for error in response.json().get("errors") or []:
            assert error["message"] != "Unexpected error.", (variables, error)
    await api.services.background.drain()
