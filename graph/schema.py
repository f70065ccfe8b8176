"""The schema and its protective extensions, built from Settings."""

from __future__ import annotations

import structlog
from graphql import GraphQLError
from strawberry import Schema
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from core.settings import Settings
from graph.limits import OneCredentialOperation
from graph.mutations import Mutation
from graph.queries import Query
from graph.subscriptions import Subscription


def should_mask(error: GraphQLError) -> bool:
    """Parse and validation errors and the errors we raise on purpose (authentication,
    bad arguments) stay readable; anything else could carry SQL or internals."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


log = structlog.get_logger("graph.errors")


class PortalSchema(Schema):
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
                log.error("graphql.fault", path=error.path, exc_info=error.original_error)
            else:
                code = (error.extensions or {}).get("code")
                log.info("graphql.refused", code=code, path=error.path)


def build_schema(settings: Settings) -> Schema:
    # The limiters' rule classes are built once here. Built per request (as the
    # extension factories would), every request brings new classes, the validation
    # cache key never repeats and each page is validated again: ~30% of a page's CPU.
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
        OneCredentialOperation,
    ]
    extensions: list = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: AddValidationRules(rules),
        lambda: MaskErrors(should_mask_error=should_mask, error_message="Unexpected error."),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    if settings.is_production:
        extensions.append(DisableIntrospection)
    return PortalSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=settings.is_production),
    )
