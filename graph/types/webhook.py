"""Webhook endpoints and their delivery log (SPEC 8.8). The signing secret is never a
field: it is returned once, by the mutation that creates or rotates it."""

from __future__ import annotations

import base64
from datetime import datetime

import strawberry

from graph.errors import BadRequest
from graph.ids import PATIENT, WEBHOOK_DELIVERY, WEBHOOK_ENDPOINT, global_id
from graph.types.common import PageInfo
from graph.types.node import Node
from models import PortalEvent
from models import WebhookAttempt as AttemptModel
from models import WebhookDelivery as DeliveryModel
from models import WebhookEndpoint as EndpointModel
from models.webhook import PARKED


@strawberry.type(description="Where a practice's events are posted (Standard Webhooks).")
class WebhookEndpoint(Node):
    id: strawberry.ID
    url: str
    event_types: list[str] = strawberry.field(
        description="Event types delivered; empty means every type (docs/events.md)."
    )
    enabled: bool
    disabled_reason: str | None = strawberry.field(
        description="Why it stopped: disabled by staff, or deliveries failing too long."
    )
    disabled_at: datetime | None
    created_at: datetime
    previous_secret_valid_until: datetime | None = strawberry.field(
        description="After a rotation, the old secret also signs until then."
    )

    @classmethod
    def from_model(cls, endpoint: EndpointModel) -> WebhookEndpoint:
        return cls(
            id=global_id(WEBHOOK_ENDPOINT, endpoint.id),
            url=endpoint.url,
            event_types=list(endpoint.event_types or []),
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            disabled_at=endpoint.disabled_at,
            created_at=endpoint.created_at,
            previous_secret_valid_until=(
                endpoint.previous_secret_until if endpoint.previous_secret else None
            ),
        )


@strawberry.type(description="One HTTP attempt to deliver an event.")
class WebhookAttempt:
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None = strawberry.field(
        description="The first bytes of the reply body."
    )
    error: str | None = strawberry.field(description="Why there was no reply (timeout...).")

    @classmethod
    def from_model(cls, attempt: AttemptModel) -> WebhookAttempt:
        return cls(
            attempted_at=attempt.attempted_at,
            status_code=attempt.status_code,
            latency_ms=attempt.latency_ms,
            response_excerpt=attempt.response_excerpt,
            error=attempt.error,
        )


@strawberry.type(description="One event on its way to one endpoint, with every attempt.")
class WebhookDelivery(Node):
    id: strawberry.ID
    event_id: str = strawberry.field(description="The webhook-id header (evt_…).")
    event_type: str
    patient_id: strawberry.ID
    sequence: int
    status: str = strawberry.field(description="pending, delivered or failed.")
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[WebhookAttempt]

    @classmethod
    def from_models(
        cls, delivery: DeliveryModel, event: PortalEvent | None, attempts: list[AttemptModel]
    ) -> WebhookDelivery:
        return cls(
            id=global_id(WEBHOOK_DELIVERY, delivery.id),
            event_id=f"evt_{delivery.event_id}",
            event_type=event.type if event else "",
            patient_id=global_id(PATIENT, delivery.patient_id),
            sequence=event.seq if event else 0,
            status=delivery.status.value,
            # None while not due at any time: sent, failed, or waiting for its endpoint.
            next_attempt_at=delivery.next_attempt_at
            if delivery.status == "pending" and delivery.next_attempt_at < PARKED
            else None,
            delivered_at=delivery.delivered_at,
            created_at=delivery.created_at,
            attempts=[WebhookAttempt.from_model(a) for a in attempts],
        )


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo


def encode_delivery_cursor(delivery_id: int) -> str:
    return base64.urlsafe_b64encode(f"delivery:{delivery_id}".encode()).decode()


def decode_delivery_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
        kind, _, number = text.partition(":")
        if kind != "delivery" or not number.isdigit() or int(number) >= 2**62:
            raise ValueError
        return int(number)
    except (ValueError, UnicodeError) as exc:
        raise BadRequest("cursor is not one this service issued") from exc
