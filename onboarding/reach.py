"""Where a patient's messages go (SPEC 9.3): email when there is an address, otherwise a
text message when the patient has a mobile phone and consented to texts."""

from __future__ import annotations

from models import PasswordOrigin, Patient

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
