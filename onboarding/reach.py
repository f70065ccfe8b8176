"""Where a patient's messages go (SPEC 9.3): email when there is an address, otherwise a
text message when the patient has a mobile phone and consented to texts."""

from __future__ import annotations

from typing import Any

from core.clock import utcnow
from models import LinkToken, PasswordOrigin, Patient
from onboarding.errors import ErrorCode, Problem
from onboarding.validation import check_language, check_phone, invalid

EMAIL = "email"
SMS = "sms"


def can_text(patient: Patient) -> bool:
    return bool(patient.sms_consent and patient.mobile_phone)


def notice_route(patient: Patient) -> tuple[str, str] | None:
    """(channel, address) of account notices, or None when there is nowhere to send."""
    if patient.email:
        return EMAIL, patient.email
    if can_text(patient):
        return SMS, patient.mobile_phone or ""
    return None


def password_notice_kind(origin: PasswordOrigin, had_password: bool) -> str:
    """The words that fit the moment (SPEC 9.4): a first set-up is a welcome, a
    staff-set password says the clinic set it, anything else is a change."""
    if origin is PasswordOrigin.STAFF:
        return "password_set_by_staff"
    return "password_changed" if had_password else "account_ready"


def channel_of(address: str) -> str:
    """An E.164 number never holds "@": a link or notice sent to one went by text."""
    return EMAIL if "@" in address else SMS


def still_reaches(patient: Patient, address: str) -> bool:
    """Is ``address`` (where a link went) still where this patient's messages may go?"""
    if channel_of(address) == EMAIL:
        return patient.email_key == address.casefold()
    return can_text(patient) and patient.mobile_phone == address


def clean_contact(
    *, preferred_language: Any, mobile_phone: Any, sms_consent: Any, region: str, unset: Any
) -> tuple[dict[str, Any], list[Problem]]:
    """The language, mobile phone and text consent of a createPatient/updatePatient
    input; ``unset`` marks a field not given."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    if preferred_language is not unset:
        tag, problem = check_language("preferredLanguage", preferred_language)
        if problem:
            problems.append(problem)
        else:
            values["preferred_language"] = tag
    if mobile_phone is not unset:
        number, problem = check_phone("mobilePhone", mobile_phone, region=region, mobile=True)
        if problem:
            problems.append(problem)
        else:
            values["mobile_phone"] = number
    if sms_consent is not unset:
        if sms_consent is None:
            problems.append(invalid("smsConsent", "smsConsent must be true or false"))
        else:
            values["sms_consent"] = bool(sms_consent)
    return values, problems


NO_MOBILE_FOR_CONSENT = Problem(
    ErrorCode.INVALID_INPUT, "consent to texts needs a mobile phone on file", ("smsConsent",)
)


def settle_consent(patient: Patient, values: dict[str, Any]) -> Problem | None:
    """Apply the consent rules to ``values`` (the columns about to be written over
    ``patient``): consent needs a number, removing the number withdraws consent, and a
    new consent is dated."""
    mobile = values.get("mobile_phone", patient.mobile_phone)
    consent = values.get("sms_consent", patient.sms_consent)
    if consent and not mobile:
        if values.get("sms_consent"):
            return NO_MOBILE_FOR_CONSENT
        values["sms_consent"] = consent = False  # the number went: so does the consent
    if consent and not patient.sms_consent:
        values["sms_consent_at"] = utcnow()
    elif not consent and patient.sms_consent:
        values["sms_consent_at"] = None
    return None


def consent_event(was: bool, now: bool) -> str | None:
    """The audit action of a consent change (recorded with who and when)."""
    if now and not was:
        return "sms_consent.given"
    if was and not now:
        return "sms_consent.withdrawn"
    return None


async def last_link_texted(patient: Patient) -> bool:
    """Did the patient's newest link go by text? (Only it can still be usable.)"""
    if patient.last_link_id is None:
        return False
    return await LinkToken.filter(id=patient.last_link_id, channel=SMS).exists()


def link_route(patient: Patient, channel: str | None) -> str | None:
    """The channel a link goes by: the one asked for, or by default email when there is
    an address, else a text when the patient consented (SPEC 9.3)."""
    if channel is not None:
        return channel
    if patient.email:
        return EMAIL
    if can_text(patient):
        return SMS
    return None


def link_route_problem(
    patient: Patient, channel: str | None, where: tuple[str, ...]
) -> Problem | None:
    route = link_route(patient, channel)
    if route is None:
        return Problem(
            ErrorCode.NO_EMAIL_ON_FILE,
            "no email address and no mobile phone with consent to texts on file",
            where,
        )
    if route == EMAIL and not patient.email:
        return Problem(ErrorCode.NO_EMAIL_ON_FILE, "no email address on file", where)
    if route == SMS and not patient.mobile_phone:
        return Problem(ErrorCode.NO_MOBILE_ON_FILE, "no mobile phone on file", where)
    if route == SMS and not patient.sms_consent:
        return Problem(
            ErrorCode.NO_SMS_CONSENT,
            "the patient has not agreed to receive texts; record their consent first",
            where,
        )
    return None
