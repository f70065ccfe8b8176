"""core.objects.filled skips a dataclass's __init__: what __init__ would guarantee (every
field set, nothing else, nothing run after) is checked here for every class the
Onboarding page builds that way, through the real builders."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from graph.types.patient import Invitation, Patient, PortalAccount
from onboarding.listing import AccountRow, InvitationRow, PatientReader, PatientRow

FILLED = [AccountRow, InvitationRow, PatientRow, PortalAccount, Invitation, Patient]


@pytest.mark.parametrize("cls", FILLED, ids=lambda c: c.__name__)
def test_the_class_is_one_filled_may_build(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert not params.frozen
    assert not hasattr(cls, "__post_init__")
    assert "__slots__" not in cls.__dict__


def record(**overrides: Any) -> dict[str, Any]:
    """Every column the page statement can select (PatientReader.page_statement)."""
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    base = {
        "id": 7, "practice_id": 1, "chart_number": "C-7", "first_name": "Ana",
        "last_name": "Ruiz", "date_of_birth": date(1980, 2, 3), "email": "ana@example.com",
        "zip_code": "02139", "chart_status": "ACTIVE", "portal_enabled": True,
        "status": "INVITED", "shared": 2, "preferred_language": "es",
        "mobile_phone": "+15555550100", "sms_consent": True, "last_name_key": "ruiz",
        "first_name_key": "ana", "a_id": 3, "username": "ana", "must_change_password": False,
        "last_login_at": now, "locked_until": now + timedelta(hours=1), "l_id": 9,
        "patient_id": 7, "sent_to": "ana@example.com", "l_created_at": now,
        "l_expires_at": now + timedelta(days=3), "l_used_at": None, "l_revoked_at": None,
        "delivery_status": "SENT", "purpose": "invitation", "revoke_reason": None,
        "delivery_detail": "250 ok", "is_reminder": False, "l_channel": "email",
    }  # fmt: skip
    base.update(overrides)
    return base


def fields_of(cls: type) -> set[str]:
    # What __init__ sets (a Strawberry field with a resolver is a method, not set).
    return {f.name for f in dataclasses.fields(cls) if f.init}


@pytest.mark.parametrize("joined", [True, False])
def test_every_builder_sets_every_field_and_nothing_else(joined: bool) -> None:
    reader = PatientReader(1, timedelta(days=7), dialect="postgres")
    reader.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    r = record() if joined else record(a_id=None, l_id=None)
    row = reader._row(r, True, True, True)
    patient = Patient.from_row(row)
    built: list[Any] = [row, patient]
    if joined:
        assert row.account is not None and row.last_invitation is not None
        built += [row.account, row.last_invitation, patient.account, patient.last_invitation]
        assert patient.account.locked is True and patient.last_invitation.reminder is False
    else:
        assert patient.account is None and patient.last_invitation is None
    for obj in built:
        assert set(vars(obj)) == fields_of(type(obj)), type(obj).__name__
    # The same values __init__ would have given (defaults included).
    assert row == PatientRow(**vars(row))
    assert {type(o) for o in built} <= set(FILLED)
