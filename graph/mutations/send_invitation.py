from __future__ import annotations

from datetime import datetime

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import PATIENT_IDS, decode_patient_ids, requested_id
from graph.mutations._shared import bulk_patients, bulk_request
from graph.permissions import staff_only
from graph.types.enums import Channel
from graph.types.onboarding import OnboardingFilter
from graph.types.patient import Patient
from onboarding.invitations import send_invitations


@strawberry.input(description="Give patientIds, or a filter (the Onboarding Tool's).")
class SendInvitationInput:
    patient_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description=PATIENT_IDS
    )
    filter: OnboardingFilter | None = strawberry.field(
        default=None, description='e.g. {status: [NOT_INVITED]}: "invite everyone not invited yet".'
    )
    confirm_shared_email: bool | None = strawberry.field(
        default=False,
        description="Send even where the address is on file for other patients too.",
    )
    dry_run: bool | None = strawberry.field(
        default=False, description="Report what would happen; send nothing."
    )
    idempotency_key: str | None = strawberry.field(
        default=None, description="A retried request with the same key sends nothing twice."
    )
    channel: Channel | None = strawberry.field(
        default=None,
        description="EMAIL or SMS; by default email where there is an address, otherwise a"
        " text to a mobile phone with consent.",
    )


@strawberry.type(description="An invitation as sent (or, in a dry run, as it would be).")
class SentInvitation:
    sent_to: str
    expires_at: datetime
    reset: bool = strawberry.field(description="The patient already has a password.")
    channel: Channel


@strawberry.type
class InvitationResult:
    requested_id: strawberry.ID
    patient: Patient | None
    invitation: SentInvitation | None
    user_errors: list[UserError]


@strawberry.type
class SendInvitationPayload:
    results: list[InvitationResult]
    dry_run: bool
    user_errors: list[UserError]


@strawberry.mutation(
    description="Send the invitation/reset link by email or text message (staff, bulk).",
    extensions=staff_only(),
)
async def send_invitation(info: Info, input: SendInvitationInput) -> SendInvitationPayload:
    ctx = info.context
    request = bulk_request(
        decode_patient_ids(info, input.patient_ids),
        input.filter,
        input.dry_run,
        input.idempotency_key,
    )
    outcome = await send_invitations(
        ctx.actor,
        request,
        confirm_shared_email=bool(input.confirm_shared_email),
        settings=ctx.settings,
        channel=input.channel.value if input.channel else None,
    )
    rows = outcome.results
    patients = await bulk_patients(info, rows)
    return SendInvitationPayload(
        results=[
            InvitationResult(
                requested_id=requested_id(info, r.requested_id, r.patient_id),
                patient=patients.get(r.patient_id) if r.patient_id else None,
                invitation=SentInvitation(
                    sent_to=r.invitation.sent_to,
                    expires_at=r.invitation.expires_at,
                    reset=r.invitation.reset,
                    channel=Channel(r.invitation.channel),
                )
                if r.invitation and not r.problems
                else None,
                user_errors=user_errors(r.problems),
            )
            for r in rows
        ],
        dry_run=request.dry_run,
        user_errors=user_errors(outcome.problems),
    )
