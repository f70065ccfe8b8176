"""Chart fields as the EMR sends them: createPatient, updatePatient."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.unset import UNSET
from mail import compose, outbox
from models import INVITABLE_CHART_STATUSES, ChartStatus, Patient, RevokeReason
from onboarding import audit, reach
from onboarding.actor import Actor
from onboarding.errors import ErrorCode, Problem
from onboarding.unit_of_work import PatientChange, patient_change
from onboarding.validation import check_birth_date, check_email, check_text, check_zip


@dataclass
class ChartInput:
    """Fields left as ``UNSET`` are not changed (updatePatient)."""

    chart_number: object = UNSET
    first_name: object = UNSET
    last_name: object = UNSET
    date_of_birth: object = UNSET
    email: object = UNSET
    zip_code: object = UNSET
    chart_status: object = UNSET
    preferred_language: object = UNSET
    mobile_phone: object = UNSET
    sms_consent: object = UNSET
    phone_region: str = "US"  # PORTAL_PHONE_REGION: numbers typed without a country code


def _clean(data: ChartInput) -> tuple[dict[str, object], list[Problem]]:
    values: dict[str, object] = {}
    problems: list[Problem] = []
    for attr, gql, limit in (
        ("chart_number", "chartNumber", 64),
        ("first_name", "firstName", 100),
        ("last_name", "lastName", 100),
    ):
        raw = getattr(data, attr)
        if raw is UNSET:
            continue
        if raw is None:
            problems.append(Problem(ErrorCode.INVALID_INPUT, f"{gql} is required", (gql,)))
            continue
        cleaned, problem = check_text(gql, str(raw), max_length=limit)
        values[attr] = cleaned
        if problem:
            problems.append(problem)
    if data.date_of_birth is not UNSET:
        if not isinstance(data.date_of_birth, date):
            problems.append(
                Problem(ErrorCode.INVALID_INPUT, "dateOfBirth is required", ("dateOfBirth",))
            )
        else:
            values["date_of_birth"] = data.date_of_birth
            if problem := check_birth_date("dateOfBirth", data.date_of_birth):
                problems.append(problem)
    if data.email is not UNSET:
        email, problem = check_email("email", data.email)  # type: ignore[arg-type]
        values["email"] = email
        if problem:
            problems.append(problem)
    if data.zip_code is not UNSET:
        zip_code, problem = check_zip("zipCode", data.zip_code)  # type: ignore[arg-type]
        values["zip_code"] = zip_code
        if problem:
            problems.append(problem)
    if data.chart_status is not UNSET:
        if data.chart_status is None:
            problems.append(
                Problem(ErrorCode.INVALID_INPUT, "chartStatus is required", ("chartStatus",))
            )
        else:
            values["chart_status"] = ChartStatus(str(data.chart_status))
    contact, contact_problems = reach.clean_contact(
        preferred_language=data.preferred_language,
        mobile_phone=data.mobile_phone,
        sms_consent=data.sms_consent,
        region=data.phone_region,
        unset=UNSET,
    )
    return {**values, **contact}, problems + contact_problems


def _duplicate_chart() -> Problem:
    return Problem(
        ErrorCode.DUPLICATE_CHART_NUMBER,
        "another patient of this practice has that chart number",
        ("chartNumber",),
    )


async def create_patient(actor: Actor, data: ChartInput) -> tuple[int | None, list[Problem]]:
    assert actor.practice_id is not None
    values, problems = _clean(data)
    for required, gql in (
        ("chart_number", "chartNumber"),
        ("first_name", "firstName"),
        ("last_name", "lastName"),
        ("date_of_birth", "dateOfBirth"),
    ):
        if required not in values and not any(p.field == (gql,) for p in problems):
            problems.append(Problem(ErrorCode.INVALID_INPUT, f"{gql} is required", (gql,)))
    if not problems and (problem := reach.settle_consent(Patient(), values)):
        problems.append(problem)
    if problems:
        return None, problems
    patient = Patient(practice_id=actor.practice_id, **values)
    patient.normalise_keys()
    try:
        async with in_transaction():
            await patient.save()
            await audit.record(actor, "patient.created", patient_id=patient.id)
            if patient.sms_consent:
                await audit.record(actor, "sms_consent.given", patient_id=patient.id)
    except IntegrityError:
        return None, [_duplicate_chart()]
    return patient.id, []


async def update_patient(
    actor: Actor, patient_id: int, data: ChartInput
) -> tuple[int | None, list[Problem]]:
    values, problems = _clean(data)
    if problems:
        return None, problems
    try:
        async with patient_change(actor, [patient_id], practice_id=actor.practice_id) as change:
            patient = change.patient(patient_id)
            if patient is None:
                return None, [Problem(ErrorCode.NOT_FOUND, "no such patient", ("id",))]
            if problem := reach.settle_consent(patient, values):
                return None, [problem]
            changed = [k for k, v in values.items() if getattr(patient, k) != v]
            if not changed:
                return patient.id, []
            consent_event = reach.consent_event(
                patient.sms_consent, bool(values.get("sms_consent", patient.sms_consent))
            )
            texts_move = "mobile_phone" in changed or consent_event == "sms_consent.withdrawn"
            new_email = values.get("email")
            email_changed = "email" in changed and (
                (patient.email or "").casefold() != str(new_email or "").casefold()
            )
            old_email = patient.email
            for key in changed:
                setattr(patient, key, values[key])
            patient.normalise_keys()
            if email_changed:
                patient.email_changed_at = utcnow()
            columns = [*changed, "first_name_key", "last_name_key", "email_key", "updated_at"]
            if email_changed:
                columns.append("email_changed_at")
            # Only the chart's own columns: the portal switch and the trigger-kept copies
            # are not this change's to write.
            await patient.save(update_fields=sorted(set(columns)))
            if email_changed:
                # The address of record changed: links sent to the old one die (TOK-5).
                await change.revoke_links([patient.id], RevokeReason.EMAIL_CHANGED)
                if old_email and change.account(patient.id) is not None:
                    await _notify_email_changed(change, patient, old_email)
            if texts_move and not email_changed and await reach.last_link_texted(patient):
                # As for an address: a link texted to the old number (or to a patient who
                # withdrew consent) dies.
                await change.revoke_links([patient.id], RevokeReason.PHONE_CHANGED)
            if consent_event:
                await change.record(actor, consent_event, patient_id=patient.id)
            if patient.chart_status not in INVITABLE_CHART_STATUSES and patient.portal_enabled:
                # An inactive or deceased chart loses portal access with everything that
                # grants it; re-activating the chart does not give it back (staff enable
                # access again, deliberately).
                await change.disable_portal([patient.id], RevokeReason.PORTAL_DISABLED)
                await change.record(actor, "portal.disabled", patient_id=patient.id)
            await change.record(
                actor, "patient.updated", patient_id=patient.id, detail={"fields": sorted(changed)}
            )
    except IntegrityError:
        return None, [_duplicate_chart()]
    return patient_id, []


async def _notify_email_changed(change: PatientChange, patient: Patient, old_email: str) -> None:
    """Tell the previous address that the address of record changed, so a patient whose
    recovery address was swapped learns of it (SECURITY NOTIF-1). Inside the caller's
    transaction; the message never names the new address."""
    practice = await change.practice()
    draft = compose.email_changed(practice, patient, when=utcnow())
    await change.queue(
        [
            outbox.message(
                practice_id=practice.id,
                patient_id=patient.id,
                to_addr=old_email,
                draft=draft,
            )
        ]
    )
