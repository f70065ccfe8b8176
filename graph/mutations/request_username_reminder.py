from __future__ import annotations

import strawberry

from graph.context import Info
from graph.mutations._identity import IdentityInput, SelfServicePayload, answer, within_budget
from onboarding.self_service import process_username_reminder


@strawberry.mutation(
    description="Email the username to the address on file after the identity check (anonymous)."
)
async def request_username_reminder(info: Info, input: IdentityInput) -> SelfServicePayload:
    ctx = info.context
    claim = input.claim()
    allowed = await within_budget(info, claim)
    if claim is not None and allowed:
        ctx.services.background.spawn(
            process_username_reminder(ctx.actor, claim, ctx.settings), "username_reminder"
        )
    return answer(allowed)
