from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import PATIENT_IDS, decode_patient_ids
from graph.mutations._shared import PatientResult, patient_results
from graph.permissions import staff_only
from onboarding.bulk import too_many
from onboarding.portal import disable_portal as disable


@strawberry.input
class DisablePortalInput:
    patient_ids: list[strawberry.ID] = strawberry.field(description=PATIENT_IDS)


@strawberry.type
class DisablePortalPayload:
    results: list[PatientResult]
    user_errors: list[UserError]


@strawberry.mutation(
    description="Disable portal access (staff, bulk); revokes links and signs the patient out.",
    extensions=staff_only(),
)
async def disable_portal(info: Info, input: DisablePortalInput) -> DisablePortalPayload:
    ctx = info.context
    if problem := too_many(len(input.patient_ids), ctx.settings.max_bulk_ids):
        return DisablePortalPayload(results=[], user_errors=user_errors([problem]))
    rows = await disable(ctx.actor, decode_patient_ids(info, input.patient_ids) or [])
    return DisablePortalPayload(results=await patient_results(info, rows), user_errors=[])
