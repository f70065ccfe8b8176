"""The shortcuts building a page's objects (issue 15) answer exactly what the plain
calls answered: enum members from the value table, global ids without base64's wrapper."""

from __future__ import annotations

import base64

import pytest

from core.enums import member_of
from core.ids import global_id_text
from graph.types.enums import Channel, ChartStatus, DeliveryStatus
from graph.types.patient import _channel, _chart_status, _delivery_status
from onboarding.listing import _portal_status
from onboarding.status import PortalStatus


@pytest.mark.parametrize(
    ("enum", "member"),
    [
        (ChartStatus, _chart_status),
        (Channel, _channel),
        (DeliveryStatus, _delivery_status),
        (PortalStatus, _portal_status),
    ],
)
def test_every_stored_value_gives_the_constructors_member(enum, member) -> None:  # type: ignore[no-untyped-def]
    for value in enum:
        assert member(value.value) is enum(value.value)
    # An unknown value fails as the constructor fails, not with a None member.
    with pytest.raises(ValueError):
        member("no such value")
    with pytest.raises(ValueError):
        member(None)


def test_a_missing_hook_still_runs() -> None:
    """An enum that maps other spellings through ``_missing_`` keeps doing so."""
    from enum import Enum

    class Loose(Enum):
        A = "a"

        @classmethod
        def _missing_(cls, value: object) -> Loose | None:
            return cls.A if value == "A" else None

    assert member_of(Loose)("A") is Loose.A
    assert member_of(Loose)("a") is Loose.A


@pytest.mark.parametrize("pk", [1, 9, 42, 2**31 - 1, 123456789])
@pytest.mark.parametrize("type_name", ["Patient", "Invitation", "AuditEvent", "X"])
def test_global_ids_are_base64_of_type_and_number(type_name: str, pk: int) -> None:
    expected = base64.b64encode(f"{type_name}:{pk}".encode()).decode("ascii")
    assert global_id_text(type_name, pk) == expected
