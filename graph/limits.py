"""GraphQL-level abuse limits, all refused during validation, before any resolver runs
(SPEC section 6, SECURITY GQL-1..GQL-6)."""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

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


class OneCredentialOperation(ValidationRule):
    def enter_document(self, node: Any, *_args: Any) -> None:
        fragments = {
            d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)
        }
        count = 0
        for definition in node.definitions:
            if isinstance(definition, OperationDefinitionNode):
                count += self._count(definition.selection_set, fragments, set())
        if count > 1:
            self.report_error(
                GraphQLError(
                    "At most one credential operation (login, redeemToken, tokenInfo, "
                    "requestSelfReset, requestUsernameReminder, changePassword) per request."
                )
            )

    def _count(
        self,
        selection_set: SelectionSetNode | None,
        fragments: dict[str, FragmentDefinitionNode],
        seen: set[str],
    ) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += selection.name.value in CREDENTIAL_FIELDS
            elif isinstance(selection, InlineFragmentNode):
                total += self._count(selection.selection_set, fragments, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:
                    total += self._count(fragments[name].selection_set, fragments, seen | {name})
        return total
