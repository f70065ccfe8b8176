"""Relay's node/nodes: global ids resolved per type, in one query per type, always
scoped to the staff user's practice (another practice's object reads as unknown)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from graph.context import Info
from graph.ids import (
    AUDIT_EVENT,
    INVITATION,
    PATIENT,
    PRACTICE,
    WEBHOOK_DELIVERY,
    WEBHOOK_ENDPOINT,
    parse_global_id,
)
from graph.types.audit import AuditEvent
from graph.types.node import Node
from graph.types.patient import Invitation, Patient
from graph.types.practice import Practice
from graph.types.webhook import WebhookEndpoint
from graph.webhook_queries import with_attempts
from models import AuditEvent as AuditEventModel
from models import Practice as PracticeModel
from models import WebhookDelivery as DeliveryModel
from models import WebhookEndpoint as EndpointModel


async def resolve_nodes(info: Info, ids: Sequence[str]) -> list[Node | None]:
    ctx = info.context
    wanted: dict[str, set[int]] = defaultdict(set)
    parsed = [parse_global_id(str(i)) for i in ids]
    for item in parsed:
        if item is not None:
            wanted[item[0]].add(item[1])
    found: dict[tuple[str, int], Node] = {}
    reader = ctx.patient_reader()
    if wanted[PATIENT]:
        for pk, row in (await reader.by_ids(sorted(wanted[PATIENT]))).items():
            found[(PATIENT, pk)] = Patient.from_row(row)
    if wanted[INVITATION]:
        for pk, inv in (await reader.invitations_by_ids(sorted(wanted[INVITATION]))).items():
            found[(INVITATION, pk)] = Invitation.from_row(inv)
    if wanted[AUDIT_EVENT]:
        events = await AuditEventModel.filter(
            practice_id=ctx.practice_id, id__in=sorted(wanted[AUDIT_EVENT])
        )
        for event in events:
            found[(AUDIT_EVENT, event.id)] = AuditEvent.from_model(event)
    if ctx.practice_id in wanted[PRACTICE]:
        practice = await PracticeModel.get(id=ctx.practice_id)
        found[(PRACTICE, practice.id)] = Practice.from_model(practice)
    if wanted[WEBHOOK_ENDPOINT]:
        endpoints = await EndpointModel.filter(
            practice_id=ctx.practice_id, id__in=sorted(wanted[WEBHOOK_ENDPOINT])
        )
        for endpoint in endpoints:
            found[(WEBHOOK_ENDPOINT, endpoint.id)] = WebhookEndpoint.from_model(endpoint)
    if wanted[WEBHOOK_DELIVERY]:
        deliveries = await DeliveryModel.filter(
            practice_id=ctx.practice_id, id__in=sorted(wanted[WEBHOOK_DELIVERY])
        )
        for delivery, node in zip(deliveries, await with_attempts(deliveries), strict=True):
            found[(WEBHOOK_DELIVERY, delivery.id)] = node
    return [found.get(item) if item is not None else None for item in parsed]
