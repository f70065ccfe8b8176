from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import webhook_endpoint_pk
from graph.permissions import staff_only
from graph.types.webhook import WebhookEndpoint
from onboarding.webhooks import rotate_secret


@strawberry.input
class RotateWebhookSecretInput:
    id: strawberry.ID


@strawberry.type
class RotateWebhookSecretPayload:
    endpoint: WebhookEndpoint | None
    secret: str | None = strawberry.field(
        description="The new secret, shown this once. The old one keeps signing until "
        "endpoint.previousSecretValidUntil."
    )
    user_errors: list[UserError]


@strawberry.mutation(
    description="Replace an endpoint's signing secret (staff).",
    extensions=staff_only(),
)
async def rotate_webhook_secret(
    info: Info, input: RotateWebhookSecretInput
) -> RotateWebhookSecretPayload:
    ctx = info.context
    ctx.require_staff()
    rotated, problems = await rotate_secret(
        ctx.actor, ctx.practice_id, webhook_endpoint_pk(input.id), ctx.settings
    )
    if rotated is None:
        return RotateWebhookSecretPayload(
            endpoint=None, secret=None, user_errors=user_errors(problems)
        )
    return RotateWebhookSecretPayload(
        endpoint=WebhookEndpoint.from_model(rotated.endpoint),
        secret=rotated.secret,
        user_errors=[],
    )
