"""GraphQL-level abuse limits (SPEC section 6, SECURITY GQL-1..GQL-6).

Everything here is linear in the document: each fragment is summarised once and the
summary reused wherever it is spread (multiplied by how often it is spread). The
Strawberry limiters this replaces walked fragments as a tree, so a chain of fragments
each spreading the next twice cost 2^n visits on the event loop: 824 bytes froze the
server for 12 s.

- ``PortalValidation`` (validation; no variables needed, so its verdict is cached with
  the document): depth, aliases, nesting, at most one credential operation and at
  most one run of each mutation that can send mail.
- ``CostLimit`` (an extension that runs after validation and before execution, when the
  variables are known): rows a request can read and patients its bulk mutations can
  touch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from core.settings import Settings

# Operations that check a secret or send mail: at most one per request, however spelled
# (aliases, fragments, several operations in one document).
CREDENTIAL_FIELDS = frozenset(
    {
        "redeemToken",
        "login",
        "requestSelfReset",
        "requestUsernameReminder",
        "changePassword",
        "tokenInfo",
    }
)
# Mutations that can send mail: each runs at most once per request, so aliases cannot
# mail the same patients 30 times (SECURITY GQL-2, issue 10).
MAILING_FIELDS = frozenset(
    {
        "sendInvitation",
        "setCredentials",
        "updatePatient",
        "redeemToken",
        "changePassword",
        "requestSelfReset",
        "requestUsernameReminder",
    }
)
TRACKED_FIELDS = CREDENTIAL_FIELDS | MAILING_FIELDS

# Counts stop growing here. Multiplicities double at each link of a fragment chain, and
# any limit is reached long before; unbounded integers would grow with the chain.
SATURATED = 1 << 40

# Selection sets, inline fragments and fragment spreads nested more than this refuse
# the document. It keeps every walk here (and graphql-core's own recursive rules) far
# from Python's recursion limit, whatever the field depth.
MAX_NESTING = 32


def _sat(value: int) -> int:
    return value if value < SATURATED else SATURATED


@dataclass
class Shape:
    """What a selection set holds once its fragments are expanded."""

    depth: int = 0
    aliases: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    too_nested: bool = False

    def add(self, other: Shape, *, depth_offset: int = 0) -> None:
        self.depth = max(self.depth, other.depth + depth_offset if other.depth else 0)
        self.aliases = _sat(self.aliases + other.aliases)
        for name, count in other.counts.items():
            self.counts[name] = _sat(self.counts.get(name, 0) + count)
        self.too_nested = self.too_nested or other.too_nested


class ShapeWalker:
    """Summarises selection sets; each named fragment is walked once (memoised)."""

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, Shape] = {}
        self.active: set[str] = set()

    def selection_set(self, node: SelectionSetNode, nesting: int) -> Shape:
        shape = Shape()
        if nesting > MAX_NESTING:
            shape.too_nested = True
            return shape
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if selection.alias:
                    shape.aliases = _sat(shape.aliases + 1)
                if name in TRACKED_FIELDS:
                    shape.counts[name] = _sat(shape.counts.get(name, 0) + 1)
                if selection.selection_set:
                    child = self.selection_set(selection.selection_set, nesting + 1)
                    if name.startswith("__"):
                        # Introspection depth is graphql-core's MaxIntrospectionDepthRule's
                        # job (GraphiQL's own introspection query is deeper than our limit).
                        child = Shape(0, child.aliases, child.counts, child.too_nested)
                        shape.add(child)
                    else:
                        shape.add(child, depth_offset=1)
                        shape.depth = max(shape.depth, 1)
            elif isinstance(selection, InlineFragmentNode):
                shape.add(self.selection_set(selection.selection_set, nesting + 1))
            elif isinstance(selection, FragmentSpreadNode):
                shape.add(self.fragment(selection.name.value, nesting + 1))
        return shape

    def fragment(self, name: str, nesting: int) -> Shape:
        if name in self.memo:
            return self.memo[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.active:
            # Unknown fragments and cycles are reported by graphql-core's own rules.
            return Shape()
        self.active.add(name)
        try:
            shape = self.selection_set(definition.selection_set, nesting)
        finally:
            self.active.discard(name)
        # Memoised even when cut short by nesting (the document is refused then): not
        # memoising would bring back the exponential walk.
        self.memo[name] = shape
        return shape


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def operations_of(document: DocumentNode) -> Iterator[OperationDefinitionNode]:
    return (d for d in document.definitions if isinstance(d, OperationDefinitionNode))


def shape_errors(document: DocumentNode, settings: Settings) -> list[GraphQLError]:
    """Depth, nesting, aliases, credential and mailing operations of every operation in
    the document, in one memoised walk."""
    errors: list[GraphQLError] = []
    max_depth, max_aliases = settings.max_query_depth, settings.max_aliases
    walker = ShapeWalker(fragments_of(document))
    total = Shape()
    for operation in operations_of(document):
        shape = walker.selection_set(operation.selection_set, 1)
        name = operation.name.value if operation.name else "anonymous"
        if shape.too_nested:
            errors.append(
                GraphQLError(
                    f"'{name}' nests selections and fragments more than {MAX_NESTING} "
                    "levels deep; exceeds maximum operation depth."
                )
            )
        elif shape.depth > max_depth:
            errors.append(GraphQLError(f"'{name}' exceeds maximum operation depth of {max_depth}"))
        total.add(shape)
    if total.aliases > max_aliases:
        shown = "more than a million" if total.aliases >= 1_000_000 else total.aliases
        errors.append(GraphQLError(f"{shown} aliases found. Allowed: {max_aliases}"))
    if sum(total.counts.get(n, 0) for n in CREDENTIAL_FIELDS) > 1:
        errors.append(
            GraphQLError(
                "At most one credential operation (login, redeemToken, tokenInfo, "
                "requestSelfReset, requestUsernameReminder, changePassword) per request."
            )
        )
    repeated = sorted(n for n in MAILING_FIELDS if total.counts.get(n, 0) > 1)
    if repeated:
        errors.append(
            GraphQLError(
                f"{', '.join(repeated)} can send mail and may run at most once per request."
            )
        )
    return errors


class PortalValidation(SchemaExtension):
    """Our limits first, graphql-core's rules only for documents that pass them, both
    cached per document (``cached_validation``). graphql-core's
    OverlappingFieldsCanBeMergedRule compares fragments pairwise (about 0.5 s for a
    2,000-token fragment chain); the nesting cap refuses such a chain before it runs."""

    def __init__(self, validate: Validate) -> None:
        super().__init__()
        self.validate = validate

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        # Set before Strawberry's own step, which then validates nothing again.
        context.pre_execution_errors = self.validate(
            context.schema._schema, context.graphql_document, context.validation_rules
        )
        yield


# (schema, document, graphql-core rules) -> errors, our limits' or else graphql-core's.
Validate = Callable[[GraphQLSchema, DocumentNode, tuple[Any, ...]], list[GraphQLError]]


def cached_validation(settings: Settings, maxsize: int) -> Validate:
    """Built once per schema: the ParserCache hands the same document object back for
    the same text, so a repeated query is validated once. Keyed by the document's
    identity: graphql-core's nodes are frozen dataclasses whose hash walks the whole
    tree, ~19 us for the Onboarding page's document on every request (issue 15), which
    Strawberry's ValidationCache (keyed by the document itself) paid per request."""

    @lru_cache(maxsize=maxsize)
    def cached(
        key: _SameDocument, schema: GraphQLSchema, rules: tuple[Any, ...]
    ) -> list[GraphQLError]:
        return shape_errors(key.document, settings) or validate_document(
            schema, key.document, rules
        )

    def validate(
        schema: GraphQLSchema, document: DocumentNode, rules: tuple[Any, ...]
    ) -> list[GraphQLError]:
        return cached(_SameDocument(document), schema, rules)

    return validate


class _SameDocument:
    """A document as a cache key by identity. The cache entry keeps the document alive,
    so its id cannot be reused by another document meanwhile; an equal document parsed
    again is another key, checked again (the same answer, computed twice)."""

    __slots__ = ("document",)

    def __init__(self, document: DocumentNode) -> None:
        self.document = document

    def __hash__(self) -> int:
        return id(self.document)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameDocument) and other.document is self.document


# ---------------------------------------------------------------- cost (needs variables)

# What one occurrence of a root field costs besides its rows: roughly its SQL round
# trips and scans, in rows' worth. Fields not listed cost 1.
FIELD_WEIGHTS = {
    "onboarding": 20,
    "auditEvents": 20,
    # Several grouped counts over the practice and the invitation history.
    "onboardingStats": 200,
}
PAGED_FIELDS = frozenset({"onboarding", "auditEvents"})
# A search matches words against names, chart numbers and emails (a trigram scan on
# PostgreSQL, a LIKE scan on SQLite): several times a plain page. 30 aliased searched
# pages of 200 took 5.6 s on a 22,000-patient practice.
SEARCH_FACTOR = 4
# The connection's totalCount/statusCounts: one grouped count over the practice.
COUNT_WEIGHT = 20
BULK_FIELDS = frozenset({"enablePortal", "disablePortal", "sendInvitation"})
DEFAULT_PAGE_SIZE = 50


@dataclass
class Cost:
    rows: int = 0
    patients: int = 0

    def add(self, other: Cost, times: int = 1) -> None:
        self.rows = _sat(self.rows + other.rows * times)
        self.patients = _sat(self.patients + other.patients * times)


class CostWalker:
    """Rows a request can read and patients its bulk mutations can touch, with the
    request's variables; fragments are costed once (memoised)."""

    def __init__(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        settings: Settings,
    ) -> None:
        self.fragments = fragments
        self.variables = variables
        self.settings = settings
        self.memo: dict[str, Cost] = {}
        self.active: set[str] = set()

    def value(self, node: ValueNode | None) -> Any:
        if node is None or isinstance(node, NullValueNode):
            return None
        if isinstance(node, VariableNode):
            return self.variables.get(node.name.value)
        if isinstance(node, IntValueNode):
            try:
                return int(node.value)
            except ValueError:
                return None
        if isinstance(node, (StringValueNode, BooleanValueNode)):
            return node.value
        if isinstance(node, ListValueNode):
            return [self.value(v) for v in node.values]
        if isinstance(node, ObjectValueNode):
            return {f.name.value: self.value(f.value) for f in node.fields}
        return None

    def arguments(self, node: FieldNode) -> dict[str, Any]:
        return {a.name.value: self.value(a.value) for a in node.arguments or ()}

    def selection_set(self, node: SelectionSetNode | None, nesting: int = 0) -> Cost:
        cost = Cost()
        if node is None or nesting > MAX_NESTING:
            return cost
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                cost.add(self.field(selection, nesting))
            elif isinstance(selection, InlineFragmentNode):
                cost.add(self.selection_set(selection.selection_set, nesting + 1))
            elif isinstance(selection, FragmentSpreadNode):
                cost.add(self.fragment(selection.name.value, nesting + 1))
        return cost

    def fragment(self, name: str, nesting: int) -> Cost:
        if name in self.memo:
            return self.memo[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.active:
            return Cost()
        self.active.add(name)
        try:
            cost = self.selection_set(definition.selection_set, nesting)
        finally:
            self.active.discard(name)
        self.memo[name] = cost
        return cost

    def field(self, node: FieldNode, nesting: int) -> Cost:
        name = node.name.value
        cost = Cost(rows=FIELD_WEIGHTS.get(name, 1))
        if name in PAGED_FIELDS:
            args = self.arguments(node)
            first = args.get("first")
            if not isinstance(first, int) or isinstance(first, bool):
                first = DEFAULT_PAGE_SIZE
            # Beyond the maximum the resolver refuses with its own error.
            rows = max(1, min(first, self.settings.max_page_size))
            given = args.get("filter")
            if isinstance(given, dict) and given.get("search"):
                rows *= SEARCH_FACTOR
            cost.rows += rows
            if node.selection_set and any(
                isinstance(s, FieldNode) and s.name.value in ("totalCount", "statusCounts")
                for s in node.selection_set.selections
            ):
                cost.rows += COUNT_WEIGHT
            # What is selected under the page is read from the same rows.
            return cost
        if name in BULK_FIELDS:
            args = self.arguments(node)
            given = args.get("input")
            ids = given.get("patientIds") if isinstance(given, dict) else None
            if isinstance(ids, list):
                # One action over its own cap answers its own clearer error.
                cost.patients = min(len(ids), self.settings.max_bulk_ids)
            else:
                # A filter can touch up to the bulk cap (the action refuses more).
                cost.patients = self.settings.max_bulk_ids
            return cost
        cost.add(self.selection_set(node.selection_set, nesting + 1))
        return cost


def request_cost(
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
    settings: Settings,
) -> Cost:
    walker = CostWalker(fragments_of(document), variables, settings)
    return walker.selection_set(operation.selection_set)


class CostLimit(SchemaExtension):
    """Refuses, before any resolver runs, a request that can read more than
    ``max_cost`` rows or touch more than ``max_bulk_ids`` patients in bulk."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        operation = (
            get_operation_ast(document, context.operation_name) if document is not None else None
        )
        if document is not None and operation is not None:
            variables = context.variables if isinstance(context.variables, dict) else {}
            cost = request_cost(document, operation, variables, self.settings)
            error = None
            if cost.rows > self.settings.max_cost:
                error = (
                    f"This request could read about {cost.rows} rows; the limit is "
                    f"{self.settings.max_cost}. Ask for smaller pages or fewer of them."
                )
            elif cost.patients > self.settings.max_bulk_ids:
                error = (
                    f"The bulk actions of this request could touch {cost.patients} patients; "
                    f"the limit is {self.settings.max_bulk_ids} per request."
                )
            if error:
                context.result = ExecutionResult(
                    data=None,
                    errors=[GraphQLError(error, extensions={"code": "COST_LIMIT_EXCEEDED"})],
                )
        yield
