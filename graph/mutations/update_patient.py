from __future__ import annotations

from datetime import date

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import PATIENT_ID_DESCRIPTION, patient_pk
from graph.mutations._shared import given, load_patients
from graph.permissions import staff_only
from graph.types.enums import ChartStatus
from graph.types.patient import Patient
from onboarding.errors import ErrorCode, Problem
from onboarding.patients import ChartInput
from onboarding.patients import update_patient as update_chart


@strawberry.input(description='Only the fields given change; email: null or "" clears it.')
class UpdatePatientInput:
    id: strawberry.ID = strawberry.field(description=PATIENT_ID_DESCRIPTION)
    chart_number: str | None = strawberry.UNSET
    first_name: str | None = strawberry.UNSET
    last_name: str | None = strawberry.UNSET
    date_of_birth: date | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    zip_code: str | None = strawberry.UNSET
    preferred_language: str | None = strawberry.UNSET
    mobile_phone: str | None = strawberry.UNSET
    sms_consent: bool | None = strawberry.UNSET
    chart_status: ChartStatus | None = strawberry.UNSET


@strawberry.type
class UpdatePatientPayload:
    patient: Patient | None
    user_errors: list[UserError]


@strawberry.mutation(
    description="Change chart fields (staff). A new email revokes outstanding links.",
    extensions=staff_only(),
)
async def update_patient(info: Info, input: UpdatePatientInput) -> UpdatePatientPayload:
    ctx = info.context
    pid = patient_pk(input.id)
    if pid is None:
        return UpdatePatientPayload(
            patient=None,
            user_errors=user_errors([Problem(ErrorCode.NOT_FOUND, "no such patient", ("id",))]),
        )
    status = given(input.chart_status)
    patient_id, problems = await update_chart(
        ctx.actor,
        pid,
        ChartInput(
            chart_number=given(input.chart_number),
            first_name=given(input.first_name),
            last_name=given(input.last_name),
            date_of_birth=given(input.date_of_birth),
            email=given(input.email),
            zip_code=given(input.zip_code),
            chart_status=status.value if isinstance(status, ChartStatus) else status,
            preferred_language=given(input.preferred_language),
            mobile_phone=given(input.mobile_phone),
            sms_consent=given(input.sms_consent),
            phone_region=ctx.settings.phone_region,
        ),
    )
    if problems or patient_id is None:
        return UpdatePatientPayload(patient=None, user_errors=user_errors(problems))
    patients = await load_patients(info, [patient_id])
    return UpdatePatientPayload(patient=patients[patient_id], user_errors=[])
