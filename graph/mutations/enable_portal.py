from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import PATIENT_IDS, decode_patient_ids
from graph.mutations._shared import PatientResult, bulk_request, patient_results
from graph.permissions import staff_only
from graph.types.onboarding import OnboardingFilter
from onboarding.portal import enable_portal as enable


@strawberry.input(description="Give patientIds, or a filter (the Onboarding Tool's).")
class EnablePortalInput:
    patient_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description=PATIENT_IDS
    )
    filter: OnboardingFilter | None = None
    dry_run: bool | None = strawberry.field(
        default=False, description="Report what would happen; change nothing."
    )
    idempotency_key: str | None = strawberry.field(
        default=None, description="A retried request with the same key acts only once."
    )


@strawberry.type
class EnablePortalPayload:
    results: list[PatientResult]
    dry_run: bool
    user_errors: list[UserError]


@strawberry.mutation(
    description="Enable portal access for each patient (staff, bulk).", extensions=staff_only()
)
async def enable_portal(info: Info, input: EnablePortalInput) -> EnablePortalPayload:
    ctx = info.context
    request = bulk_request(
        decode_patient_ids(info, input.patient_ids),
        input.filter,
        input.dry_run,
        input.idempotency_key,
    )
    outcome = await enable(ctx.actor, request, ctx.settings)
    return EnablePortalPayload(
        results=await patient_results(info, outcome.results),
        dry_run=request.dry_run,
        user_errors=user_errors(outcome.problems),
    )
