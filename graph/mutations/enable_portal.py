from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.mutations._shared import PatientResult, patient_results
from onboarding.bulk import too_many
from onboarding.portal import enable_portal as enable


@strawberry.input
class EnablePortalInput:
    patient_ids: list[strawberry.ID]


@strawberry.type
class EnablePortalPayload:
    results: list[PatientResult]
    user_errors: list[UserError]


@strawberry.mutation(description="Enable portal access for each patient (staff, bulk).")
async def enable_portal(info: Info, input: EnablePortalInput) -> EnablePortalPayload:
    ctx = info.context
    ctx.require_staff()
    if problem := too_many(len(input.patient_ids), ctx.settings.max_bulk_ids):
        return EnablePortalPayload(results=[], user_errors=user_errors([problem]))
    rows = await enable(ctx.actor, [str(i) for i in input.patient_ids])
    return EnablePortalPayload(results=await patient_results(info, rows), user_errors=[])
