from __future__ import annotations

import strawberry

from graph.context import Info
from graph.mutations._identity import IdentityInput, SelfServicePayload, answer, within_budget
from onboarding.self_service import process_self_reset


@strawberry.mutation(description="Set up or reset portal access from the login screen (anonymous).")
async def request_self_reset(info: Info, input: IdentityInput) -> SelfServicePayload:
    ctx = info.context
    claim = input.claim()
    allowed = await within_budget(info, claim)
    # The answer is decided here, before any lookup: the work runs after the response
    # so neither its body nor its timing tells whether a chart matched (ENUM-1/2).
    if claim is not None and allowed:
        ctx.services.background.spawn(
            process_self_reset(ctx.actor, claim, ctx.settings), "self_reset"
        )
    return answer(allowed)
