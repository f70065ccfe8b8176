from __future__ import annotations

import base64
from datetime import datetime

import strawberry

from graph.errors import BadRequest
from graph.types.common import PageInfo
from models import AuditEvent as AuditEventModel


@strawberry.type(description="One audited action. Never carries a password, token or link.")
class AuditEvent:
    id: strawberry.ID
    action: str
    actor_type: str
    actor_id: strawberry.ID | None
    patient_id: strawberry.ID | None
    outcome: str
    occurred_at: datetime
    client_address: str | None
    request_id: str | None

    @classmethod
    def from_model(cls, event: AuditEventModel) -> AuditEvent:
        patient_id = event.patient_id
        return cls(
            id=strawberry.ID(str(event.id)),
            action=event.action,
            actor_type=event.actor_type.value,
            actor_id=strawberry.ID(str(event.actor_id)) if event.actor_id is not None else None,
            patient_id=strawberry.ID(str(patient_id)) if patient_id is not None else None,
            outcome=event.outcome,
            occurred_at=event.occurred_at,
            client_address=event.client_addr,
            request_id=event.request_id,
        )


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo


def encode_audit_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{event_id}".encode()).decode()


def decode_audit_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        kind, _, number = text.partition(":")
        # Ids are 32-bit: a larger number would fail in the database driver (SPEC 6).
        if kind != "audit" or not number.isdigit() or int(number) >= 2**31:
            raise ValueError
        return int(number)
    except (ValueError, UnicodeError) as exc:
        raise BadRequest("cursor is not one this service issued") from exc
