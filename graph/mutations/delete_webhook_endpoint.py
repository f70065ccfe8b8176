from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import webhook_endpoint_pk
from graph.permissions import staff_only
from onboarding.webhooks import delete_endpoint


@strawberry.input
class DeleteWebhookEndpointInput:
    id: strawberry.ID


@strawberry.type
class DeleteWebhookEndpointPayload:
    deleted: bool
    user_errors: list[UserError]


@strawberry.mutation(
    description="Delete an endpoint with its waiting deliveries and delivery log (staff).",
    extensions=staff_only(),
)
async def delete_webhook_endpoint(
    info: Info, input: DeleteWebhookEndpointInput
) -> DeleteWebhookEndpointPayload:
    ctx = info.context
    ctx.require_staff()
    deleted, problems = await delete_endpoint(
        ctx.actor, ctx.practice_id, webhook_endpoint_pk(input.id)
    )
    return DeleteWebhookEndpointPayload(deleted=deleted, user_errors=user_errors(problems))
