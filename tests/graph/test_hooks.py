"""graph.hooks.ExtensionsRunner runs every kind of extension hook exactly as
Strawberry's own runner does (order, nesting, errors), with the lookup kept per class."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

from graph import hooks
from graph.hooks import ExtensionsRunner

EVENTS: list[str] = []


class Generators(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        EVENTS.append("gen operation in")
        yield
        EVENTS.append("gen operation out")

    def on_execute(self) -> Iterator[None]:
        EVENTS.append("gen execute in")
        try:
            yield
        finally:
            result = self.execution_context.result
            EVENTS.append(f"gen execute out {bool(result and result.errors)}")


class AsyncGenerators(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        EVENTS.append("agen operation in")
        yield
        EVENTS.append("agen operation out")

    async def on_validate(self) -> AsyncIterator[None]:
        EVENTS.append("agen validate in")
        yield
        EVENTS.append("agen validate out")


class Plain(SchemaExtension):
    def on_parse(self) -> None:  # type: ignore[override]
        EVENTS.append("plain parse")

    async def on_execute(self) -> None:  # type: ignore[override]
        EVENTS.append("async plain execute")


class Refusing(SchemaExtension):
    """Refuses one operation by raising in its validation hook."""

    def on_validate(self) -> Iterator[None]:
        if self.execution_context.operation_name == "Refused":
            raise RuntimeError("refused by an extension")
        yield


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("broken field")


class Ours(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return ExtensionsRunner(execution_context=execution_context, extensions=extensions)


EXTENSIONS = [Generators, AsyncGenerators, Plain, Refusing]
QUERIES = [
    ("query Hello { hello }", "Hello"),
    ("query Broken { hello broken }", "Broken"),
    ("query Refused { hello }", "Refused"),
    ("{ nope }", None),
]


async def run_all(schema: strawberry.Schema) -> list[tuple[Any, ...]]:
    outcomes: list[tuple[Any, ...]] = []
    for query, name in QUERIES:
        EVENTS.clear()
        try:
            result = await schema.execute(query, operation_name=name)
            outcome: Any = (result.data, [e.message for e in result.errors or []])
        except RuntimeError as exc:
            outcome = ("raised", str(exc))
        outcomes.append((query, outcome, list(EVENTS)))
    return outcomes


@pytest.mark.parametrize(
    "extensions",
    [
        EXTENSIONS,
        # Steps with no hook, and steps with one (entered without an exit stack): a
        # refusal in validation, a field error in execution.
        [Generators],
        [Refusing],
        [Plain, Refusing],
    ],
    ids=["all", "generators", "refusing", "plain-refusing"],
)
async def test_every_kind_of_hook_runs_as_strawberry_runs_it(
    extensions: list[type[SchemaExtension]],
) -> None:
    theirs = await run_all(strawberry.Schema(query=Query, extensions=extensions))
    hooks._STEPS.clear()
    ours = await run_all(Ours(query=Query, extensions=extensions))
    assert ours == theirs
    if extensions is not EXTENSIONS:
        return
    # The comparison saw every kind of hook and both outcomes of an operation.
    events = [event for _, _, evs in ours for event in evs]
    for expected in (
        "gen operation out",
        "agen validate out",
        "plain parse",
        "async plain execute",
        "gen execute out True",
    ):
        assert expected in events
    refused = next(outcome for query, outcome, _ in ours if "Refused" in query)
    assert refused == (None, ["refused by an extension"])
    # And the lookups were kept per class: generators, async generators, Strawberry's.
    found = {
        (key[0], type_.__name__): hook
        for key, step in hooks._STEPS.items()
        if key[1:] == tuple(EXTENSIONS)
        for i, hook in step
        for type_ in [key[1 + i]]
    }
    assert found[("on_operation", "Generators")][1] is False
    assert found[("on_operation", "AsyncGenerators")][1] is True
    assert found[("on_parse", "Plain")] is hooks._STRAWBERRY
    assert ("on_operation", "Plain") not in found
