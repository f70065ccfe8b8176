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
from onboarding.sql import connection, insert_one

_FORBIDDEN_DETAIL_KEYS = ("password", "token", "link", "email", "secret")


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
# One event's INSERT: the bulk columns and its detail, stored as the model's JSONField
# stores it (so the ORM reads it back the same).
_RECORD_COLUMNS = (*(name for name, _ in AUDIT_COLUMNS), "detail")
_DETAIL = AuditEvent._meta.fields_map["detail"]


async def record(
    actor: Actor,
    action: str,
    *,
    patient_id: int | None = None,
    practice_id: int | None = None,
    outcome: str = "success",
    detail: Mapping[str, Any] | None = None,
) -> None:
    """One event, by a hand-written INSERT: every login writes one, and building the
    ORM's insert cost more event-loop time than running it (issue 15)."""
    if detail:
        bad = [k for k in detail if any(f in k.lower() for f in _FORBIDDEN_DETAIL_KEYS)]
        if bad:
            raise ValueError(f"audit detail must not carry secrets: {bad}")
    await insert_one(
        connection(),
        "audit_event",
        _RECORD_COLUMNS,
        (
            practice_id if practice_id is not None else actor.practice_id,
            patient_id,
            actor.actor_type.value,
            actor.actor_id,
            action,
            outcome,
            utcnow(),
            actor.client_addr,
            actor.request_id,
            _DETAIL.to_db_value(dict(detail) if detail else None, AuditEvent),
        ),
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
