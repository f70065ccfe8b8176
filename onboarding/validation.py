"""Input checks shared by the workflows. Each returns a Problem (never raises) so a
mutation can report every bad field at once and write nothing."""

from __future__ import annotations

import re
from datetime import date
from zoneinfo import available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from core.clock import utcnow
from mail import i18n
from onboarding.errors import ErrorCode, Problem

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ZIP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-]{1,14}$")
EARLIEST_BIRTH_DATE = date(1880, 1, 1)


def invalid(field: str, message: str) -> Problem:
    return Problem(ErrorCode.INVALID_INPUT, message, (field,))


def check_text(field: str, value: str, *, max_length: int) -> tuple[str, Problem | None]:
    cleaned = value.strip()
    if not cleaned:
        return cleaned, invalid(field, f"{field} must not be empty")
    if len(cleaned) > max_length:
        return cleaned, invalid(field, f"{field} must be at most {max_length} characters")
    if _CONTROL.search(cleaned):
        return cleaned, invalid(field, f"{field} must not contain control characters")
    return cleaned, None


def check_email(field: str, value: str | None) -> tuple[str | None, Problem | None]:
    """None or "" clears the address. The result is the normalised address."""
    if value is None or not value.strip():
        return None, None
    if len(value) > 254 or _CONTROL.search(value):
        return None, invalid(field, "not a valid email address")
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None, invalid(field, "not a valid email address")
    return result.normalized, None


def check_zip(field: str, value: str | None) -> tuple[str | None, Problem | None]:
    if value is None or not value.strip():
        return None, None
    cleaned = value.strip()
    if not _ZIP.match(cleaned):
        return None, invalid(field, "not a valid postal code")
    return cleaned, None


def check_birth_date(field: str, value: date) -> Problem | None:
    if value > utcnow().date() or value < EARLIEST_BIRTH_DATE:
        return invalid(field, "date of birth is out of range")
    return None


def parse_id(value: str) -> int | None:
    """GraphQL IDs are decimal strings here; anything else names no row."""
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    number = int(value)
    return number if 0 < number < 2**31 else None


def check_phone(
    field: str, value: str | None, *, region: str, mobile: bool = False
) -> tuple[str | None, Problem | None]:
    """None or "" clears the number. A number without "+" is read as a number of
    ``region`` (PORTAL_PHONE_REGION). The result is E.164 ("+16175550100"). With
    ``mobile``, numbers that cannot receive texts (fixed lines, where the numbering plan
    tells them apart) are refused."""
    if value is None or not value.strip():
        return None, None
    if len(value) > 40 or _CONTROL.search(value):
        return None, invalid(field, "not a valid phone number")
    try:
        number = phonenumbers.parse(value.strip(), region)
    except phonenumbers.NumberParseException:
        return None, invalid(field, "not a valid phone number")
    if not phonenumbers.is_valid_number(number):
        return None, invalid(field, "not a valid phone number")
    if mobile and phonenumbers.number_type(number) not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return None, invalid(field, "not a mobile phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def check_language(field: str, value: str | None) -> tuple[str | None, Problem | None]:
    """A BCP 47 tag Babel knows ("es", "es-MX", "zh-Hant-TW"), normalised; None or ""
    means English."""
    if value is None or not value.strip():
        return "en", None
    if len(value) > 35 or _CONTROL.search(value):
        return None, invalid(field, "not a BCP 47 language tag")
    tag = i18n.normalise_tag(value)
    if tag is None:
        return None, invalid(field, "not a BCP 47 language tag (e.g. en, es, es-MX)")
    return tag, None


def check_time_zone(field: str, value: str) -> tuple[str | None, Problem | None]:
    cleaned = value.strip()
    if cleaned not in available_timezones():
        return None, invalid(field, "not an IANA time zone (e.g. America/New_York)")
    return cleaned, None


def check_website(field: str, value: str | None) -> tuple[str | None, Problem | None]:
    if value is None or not value.strip():
        return None, None
    cleaned = value.strip()
    if len(cleaned) > 254 or _CONTROL.search(cleaned) or not _WEBSITE.match(cleaned):
        return None, invalid(field, "not an http(s) address")
    return cleaned, None


_WEBSITE = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?(/[^\s<>\"']*)?$")
