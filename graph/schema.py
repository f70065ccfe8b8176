"""The schema and its protective extensions, built from Settings."""

from __future__ import annotations

import dataclasses
import traceback
from datetime import date, datetime
from typing import Any

import structlog
from graphql import GraphQLError
from strawberry import Schema
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition
from strawberry.types import ExecutionContext
from strawberry.types.scalar import ScalarDefinition

from core.passwords import HashQueueFull
from core.settings import Settings
from graph.execution import FastExecutor
from graph.hooks import ExtensionsRunner
from graph.limits import CostLimit, PortalValidation, cached_validation
from graph.mutations import Mutation
from graph.observability import RequestMetrics
from graph.queries import Query
from graph.subscriptions import Subscription


def should_mask(error: GraphQLError) -> bool:
    """Parse and validation errors and the errors we raise on purpose (authentication,
    bad arguments) stay readable; anything else could carry SQL or internals."""
    original = error.original_error
    # A full hashing queue is a deliberate refusal (RATE_LIMITED), not a fault.
    return original is not None and not isinstance(original, GraphQLError | HashQueueFull)


log = structlog.get_logger("graph.errors")


class PortalMaskErrors(MaskErrors):
    def _process_result(self, result: object) -> None:
        # Strawberry asks isinstance(result, <a runtime-checkable Protocol>) first: about
        # 13 us per request (timeit), for every request, to learn that it has `errors`.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]


RFC3339 = "https://datatracker.ietf.org/doc/html/rfc3339"
# @specifiedBy (SPEC 8.4), so code generators and clients know the exact format.
SCALARS: dict[object, ScalarDefinition] = {
    date: dataclasses.replace(
        DateDefinition,
        description="A calendar date, RFC 3339 full-date: 2024-03-09.",
        specified_by_url=RFC3339 + "#section-5.6",
    ),
    datetime: dataclasses.replace(
        DateTimeDefinition,
        description="An instant, RFC 3339 date-time with offset (UTC): 2024-03-09T14:30:00+00:00.",
        specified_by_url=RFC3339 + "#section-5.6",
    ),
}


# Database drivers quote the offending parameter in their messages (asyncpg: "invalid
# input for query argument $1: 'rosa…'"), and Unicode errors quote the string: for
# these, the log keeps the exception types and the traceback's frames, not the message.
_QUOTING_MODULES = ("asyncpg", "sqlite3", "aiosqlite", "tortoise", "pypika")


def _quotes_input(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return isinstance(exc, UnicodeError) or module.split(".")[0] in _QUOTING_MODULES


def fault_fields(exc: BaseException | None) -> dict[str, Any]:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    if not any(_quotes_input(e) for e in chain):
        return {"exc_info": chain[0] if chain else None}
    return {
        "error": " <- ".join(type(e).__qualname__ for e in chain),
        "frames": "".join(traceback.format_tb(chain[0].__traceback__)),
    }


class PortalSchema(Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return ExtensionsRunner(execution_context=execution_context, extensions=extensions)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Strawberry's default logs str(error), which quotes the request's source lines,
        # and messages can quote literal and variable values: a password or token that
        # a client wrote into the request would reach the log (SECURITY LOG-3). Faults
        # keep their traceback; refused requests are logged by shape only.
        if self.config.disable_field_suggestions:
            # Strawberry strips "Did you mean" from unknown fields only; arguments, input
            # fields, enum values and type names suggest names too (SECURITY GQL-6).
            for error in errors:
                if "Did you mean" in error.message:
                    error.message = error.message.split(" Did you mean")[0]
        for error in errors:
            if should_mask(error):
                log.error("graphql.fault", path=error.path, **fault_fields(error.original_error))
            else:
                code = (error.extensions or {}).get("code")
                log.info("graphql.refused", code=code, path=error.path)


def build_schema(settings: Settings, *, fast_execution: bool = True) -> Schema:
    """``fast_execution=False`` runs graphql-core's generic completion for every field
    (graph/execution.py): what the fast path is checked against in the tests."""
    # The validation and its cache are built once here. Built per request (as the
    # extension factories would), the cache would never hit and each page would be
    # validated again: ~30% of a page's CPU.
    validate = cached_validation(settings, maxsize=256)
    extensions: list = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        # Depth, aliases, credential and mailing operations in one walk linear in the
        # document (Strawberry's limiters walk fragments as trees: 2^n on a fragment
        # chain), then graphql-core's rules; the cost once the variables are known.
        lambda: PortalValidation(validate),
        lambda: CostLimit(settings),
        lambda: PortalMaskErrors(should_mask_error=should_mask, error_message="Unexpected error."),
        lambda: ParserCache(maxsize=256),
        RequestMetrics,
    ]
    if settings.is_production:
        extensions.append(DisableIntrospection)
    return PortalSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        scalar_overrides=SCALARS,
        config=StrawberryConfig(disable_field_suggestions=settings.is_production),
        execution_context_class=FastExecutor if fast_execution else None,
    )
