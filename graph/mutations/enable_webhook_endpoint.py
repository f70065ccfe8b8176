from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import webhook_endpoint_pk
from graph.permissions import staff_only
from graph.types.webhook import WebhookEndpoint
from onboarding.webhooks import set_enabled


@strawberry.input
class EnableWebhookEndpointInput:
    id: strawberry.ID


@strawberry.type
class EnableWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None
    user_errors: list[UserError]


@strawberry.mutation(
    description="Resume deliveries to an endpoint, oldest waiting event first (staff).",
    extensions=staff_only(),
)
async def enable_webhook_endpoint(
    info: Info, input: EnableWebhookEndpointInput
) -> EnableWebhookEndpointPayload:
    ctx = info.context
    ctx.require_staff()
    endpoint, problems = await set_enabled(
        ctx.actor, ctx.practice_id, webhook_endpoint_pk(input.id), True
    )
    return EnableWebhookEndpointPayload(
        endpoint=WebhookEndpoint.from_model(endpoint) if endpoint else None,
        user_errors=user_errors(problems),
    )
