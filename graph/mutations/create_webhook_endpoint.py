from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.permissions import staff_only
from graph.types.webhook import WebhookEndpoint
from onboarding.webhooks import create_endpoint


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(
        description="https URL whose addresses are public (SPEC 8.8); http and private "
        "addresses only where PORTAL_WEBHOOK_ALLOW_PRIVATE is set."
    )
    event_types: list[str] = strawberry.field(
        default_factory=list, description="Event types to deliver; empty for all."
    )


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None
    secret: str | None = strawberry.field(
        description="The signing secret (whsec_…), shown this once: store it now."
    )
    user_errors: list[UserError]


@strawberry.mutation(
    description="Register a webhook endpoint for the practice (staff).",
    extensions=staff_only(),
)
async def create_webhook_endpoint(
    info: Info, input: CreateWebhookEndpointInput
) -> CreateWebhookEndpointPayload:
    ctx = info.context
    ctx.require_staff()
    created, problems = await create_endpoint(
        ctx.actor, ctx.practice_id, input.url, list(input.event_types), ctx.settings
    )
    if created is None:
        return CreateWebhookEndpointPayload(
            endpoint=None, secret=None, user_errors=user_errors(problems)
        )
    return CreateWebhookEndpointPayload(
        endpoint=WebhookEndpoint.from_model(created.endpoint),
        secret=created.secret,
        user_errors=[],
    )
