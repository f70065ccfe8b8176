"""Audit events (SPEC section 3, SECURITY LOG-2/LOG-3): who, what, whom, when, where.

``detail`` takes only non-secret facts; callers never pass passwords, tokens, links or
addresses, and :func:`record` refuses keys that look like them as a second line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.clock import utcnow
from models import AuditEvent
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


async def record_many(
    actor: Actor,
    action: str,
    patient_ids: Iterable[int],
    *,
    detail: Mapping[str, Any] | None = None,
) -> None:
    events = [
        _event(actor, action, practice_id=None, patient_id=pid, outcome="success", detail=detail)
        for pid in patient_ids
    ]
    if events:
        await AuditEvent.bulk_create(events, batch_size=1000)
