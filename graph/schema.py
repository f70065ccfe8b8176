"""The schema and its protective extensions, built from Settings."""

from __future__ import annotations

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

from core.settings import Settings
from graph.limits import OneCredentialOperation
from graph.mutations import Mutation
from graph.queries import Query


def should_mask(error: GraphQLError) -> bool:
    """Parse and validation errors and the errors we raise on purpose (authentication,
    bad arguments) stay readable; anything else could carry SQL or internals."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def build_schema(settings: Settings) -> Schema:
    extensions: list = [  # type: ignore[type-arg]
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        lambda: AddValidationRules([OneCredentialOperation]),
        lambda: MaskErrors(should_mask_error=should_mask, error_message="Unexpected error."),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
    ]
    if settings.is_production:
        extensions.append(DisableIntrospection)
    return Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=settings.is_production),
    )
