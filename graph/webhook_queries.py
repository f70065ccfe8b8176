"""Staff reads of the practice's webhook endpoints and delivery log (SPEC 8.8)."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.ids import patient_pk, webhook_endpoint_pk
from graph.types.common import PageInfo, page_size
from graph.types.webhook import (
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookDeliveryEdge,
    WebhookEndpoint,
    decode_delivery_cursor,
    encode_delivery_cursor,
)
from models import PortalEvent, WebhookAttempt
from models import WebhookDelivery as DeliveryModel
from onboarding.webhooks import get_endpoint, list_endpoints


async def with_attempts(rows: list[DeliveryModel]) -> list[WebhookDelivery]:
    """Deliveries with their event and every attempt, in two queries for all rows."""
    found = {e.id: e for e in await PortalEvent.filter(id__in=[d.event_id for d in rows])}
    attempts: dict[int, list[WebhookAttempt]] = {}
    for attempt in await WebhookAttempt.filter(delivery_id__in=[d.id for d in rows]).order_by("id"):
        attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [
        WebhookDelivery.from_models(d, found.get(d.event_id), attempts.get(d.id, [])) for d in rows
    ]


async def webhook_endpoints(info: Info) -> list[WebhookEndpoint]:
    ctx = info.context
    ctx.require_staff()
    return [WebhookEndpoint.from_model(e) for e in await list_endpoints(ctx.practice_id)]


async def webhook_deliveries(
    info: Info,
    endpoint_id: strawberry.ID,
    patient_id: strawberry.ID | None = None,
    first: int | None = None,
    after: str | None = None,
) -> WebhookDeliveryConnection:
    """Newest first, each with every attempt (status code, latency, the reply's first
    bytes). Another practice's endpoint reads as empty."""
    ctx = info.context
    ctx.require_staff()
    size = page_size(first, default=50, maximum=ctx.settings.max_page_size)
    empty = WebhookDeliveryConnection(
        edges=[],
        page_info=PageInfo(
            start_cursor=None, end_cursor=None, _has_next=False, _has_previous=False
        ),
    )
    endpoint = await get_endpoint(ctx.practice_id, webhook_endpoint_pk(endpoint_id))
    if endpoint is None:
        return empty
    query = DeliveryModel.filter(endpoint_id=endpoint.id)
    if patient_id is not None:
        pid = patient_pk(patient_id)
        if pid is None:
            return empty
        query = query.filter(patient_id=pid)
    if after:
        query = query.filter(id__lt=decode_delivery_cursor(after))
    rows = await query.order_by("-id").limit(size + 1)
    page = rows[:size]
    edges = [
        WebhookDeliveryEdge(cursor=encode_delivery_cursor(d.id), node=node)
        for d, node in zip(page, await with_attempts(page), strict=True)
    ]
    return WebhookDeliveryConnection(
        edges=edges,
        page_info=PageInfo(
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
            _has_next=len(rows) > size,
            # Forward paging only: an ``after`` cursor means rows exist before it.
            _has_previous=after is not None,
        ),
    )
