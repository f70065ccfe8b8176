from __future__ import annotations

from datetime import datetime

import strawberry

from graph.ids import AUDIT_EVENT, PATIENT, global_id
from graph.types.common import PageInfo
from graph.types.node import Node
from models import AuditEvent as AuditEventModel


@strawberry.type(description="One audited action. Never carries a password, token or link.")
class AuditEvent(Node):
    id: strawberry.ID
    action: str
    actor_type: str
    actor_id: strawberry.ID | None
    patient_id: strawberry.ID | None = strawberry.field(description="The Patient's global id.")
    outcome: str
    occurred_at: datetime
    client_address: str | None
    request_id: str | None

    @classmethod
    def from_model(cls, event: AuditEventModel) -> AuditEvent:
        patient_id = event.patient_id
        return cls(
            id=global_id(AUDIT_EVENT, event.id),
            action=event.action,
            actor_type=event.actor_type.value,
            actor_id=strawberry.ID(str(event.actor_id)) if event.actor_id is not None else None,
            patient_id=global_id(PATIENT, patient_id) if patient_id is not None else None,
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
