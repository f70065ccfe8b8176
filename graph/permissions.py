"""Who may call a field, declared on the field so the schema shows it (``@staffOnly`` in
schema.graphql and introspection-based tools) and one check enforces it."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location

from graph.context import Info


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="staffOnly",
    description="Needs a staff token (Authorization: Bearer stf_…); answers only the data of"
    " that staff user's practice. Without one: an UNAUTHENTICATED error.",
)
class StaffOnly:
    pass


class IsStaff(BasePermission):
    message = "A valid staff token is required."
    error_extensions = {"code": "UNAUTHENTICATED"}  # noqa: RUF012 (as Strawberry declares it)
    _schema_directive = StaffOnly()

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return info.context.staff is not None


def staff_only() -> list[FieldExtension]:
    """The field extension for staff fields; with it the schema prints ``@staffOnly``
    (``permission_classes=`` would check the same but hide it from the schema)."""
    return [PermissionExtension(permissions=[IsStaff()], use_directives=True)]
