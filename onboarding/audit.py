"""Audit events (SPEC section 3, SECURITY LOG-2/LOG-3): who, what, whom, when, where.

``detail`` takes only non-secret facts; callers never pass passwords, tokens, links or
addresses, and :func:`record` refuses keys that look like them as a second line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.clock import utcnow
from models import AuditEvent
from models.bulk import insert_rows
from onboarding.actor import Actor

_FORBIDDEN_DETAIL_KEYS = ("password", "token", "link", "email", "secret")


def _event(
    actor: Actor,
    action: str,
    *,
    practice_id: int | None,
    patient_id: int | None,
    outcome: str,
    detail: Mapping[str, Any] | None,
) -> AuditEvent:
    if detail:
        bad = [k for k in detail if any(f in k.lower() for f in _FORBIDDEN_DETAIL_KEYS)]
        if bad:
            raise ValueError(f"audit detail must not carry secrets: {bad}")
    return AuditEvent(
        practice_id=practice_id if practice_id is not None else actor.practice_id,
        patient_id=patient_id,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        action=action,
        outcome=outcome,
        occurred_at=utcnow(),
        client_addr=actor.client_addr,
        request_id=actor.request_id,
        detail=dict(detail) if detail else None,
    )


async def record(
    actor: Actor,
    action: str,
    *,
    patient_id: int | None = None,
    practice_id: int | None = None,
    outcome: str = "success",
    detail: Mapping[str, Any] | None = None,
) -> None:
    await _event(
        actor,
        action,
        practice_id=practice_id,
        patient_id=patient_id,
        outcome=outcome,
        detail=detail,
    ).save()


AUDIT_COLUMNS = (
    ("practice_id", "int"),
    ("patient_id", "int"),
    ("actor_type", "text"),
    ("actor_id", "int"),
    ("action", "text"),
    ("outcome", "text"),
    ("occurred_at", "timestamptz"),
    ("client_addr", "text"),
    ("request_id", "text"),
)


async def record_many(actor: Actor, action: str, patient_ids: Iterable[int]) -> None:
    """One event per patient of a bulk action, as plain multi-row INSERTs (a bulk
    invitation records 10,000 at once)."""
    now = utcnow()
    await insert_rows(
        AuditEvent._meta.db_table,
        AUDIT_COLUMNS,
        [
            (
                actor.practice_id,
                pid,
                actor.actor_type.value,
                actor.actor_id,
                action,
                "success",
                now,
                actor.client_addr,
                actor.request_id,
            )
            for pid in patient_ids
        ],
    )
