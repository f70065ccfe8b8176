from __future__ import annotations

from datetime import date

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.mutations._shared import load_patients
from graph.permissions import staff_only
from graph.types.enums import ChartStatus
from graph.types.patient import Patient
from onboarding.patients import ChartInput
from onboarding.patients import create_patient as create_chart


@strawberry.input
class CreatePatientInput:
    chart_number: str
    first_name: str
    last_name: str
    date_of_birth: date
    email: str | None = None
    zip_code: str | None = None
    preferred_language: str | None = strawberry.field(
        default=None, description="BCP 47 (en, es, es-MX …); English when not given."
    )
    mobile_phone: str | None = strawberry.field(
        default=None, description="E.164, or national digits of PORTAL_PHONE_REGION."
    )
    sms_consent: bool = strawberry.field(
        default=False, description="The patient agreed to portal texts (needs mobilePhone)."
    )
    chart_status: ChartStatus = ChartStatus.ACTIVE


@strawberry.type
class CreatePatientPayload:
    patient: Patient | None
    user_errors: list[UserError]


@strawberry.mutation(
    description="Create a chart as the EMR sends it (staff).", extensions=staff_only()
)
async def create_patient(info: Info, input: CreatePatientInput) -> CreatePatientPayload:
    ctx = info.context
    patient_id, problems = await create_chart(
        ctx.actor,
        ChartInput(
            chart_number=input.chart_number,
            first_name=input.first_name,
            last_name=input.last_name,
            date_of_birth=input.date_of_birth,
            email=input.email,
            zip_code=input.zip_code,
            chart_status=input.chart_status.value,
            preferred_language=input.preferred_language,
            mobile_phone=input.mobile_phone,
            sms_consent=input.sms_consent,
            phone_region=ctx.settings.phone_region,
        ),
    )
    if problems or patient_id is None:
        return CreatePatientPayload(patient=None, user_errors=user_errors(problems))
    patients = await load_patients(info, [patient_id])
    return CreatePatientPayload(patient=patients[patient_id], user_errors=[])
