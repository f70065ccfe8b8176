"""Input checks shared by the workflows. Each returns a Problem (never raises) so a
mutation can report every bad field at once and write nothing."""

from __future__ import annotations

import re
from datetime import date

from email_validator import EmailNotValidError, validate_email

from core.clock import utcnow
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
