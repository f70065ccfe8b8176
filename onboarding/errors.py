from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorCode(Enum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    FORBIDDEN = "FORBIDDEN"
    PORTAL_DISABLED = "PORTAL_DISABLED"
    NO_EMAIL_ON_FILE = "NO_EMAIL_ON_FILE"
    NO_MOBILE_ON_FILE = "NO_MOBILE_ON_FILE"
    NO_SMS_CONSENT = "NO_SMS_CONSENT"
    SMS_NOT_AVAILABLE = "SMS_NOT_AVAILABLE"
    INACTIVE_PATIENT = "INACTIVE_PATIENT"
    EMAIL_SHARED = "EMAIL_SHARED"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    TOKEN_USED = "TOKEN_USED"
    USERNAME_TAKEN = "USERNAME_TAKEN"
    USERNAME_INVALID = "USERNAME_INVALID"
    PASSWORD_TOO_WEAK = "PASSWORD_TOO_WEAK"
    DUPLICATE_CHART_NUMBER = "DUPLICATE_CHART_NUMBER"
    DATE_OF_BIRTH_MISMATCH = "DATE_OF_BIRTH_MISMATCH"
    PASSWORD_CHANGE_REQUIRED = "PASSWORD_CHANGE_REQUIRED"
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED"


@dataclass(frozen=True)
class Problem:
    """A business error, returned in a payload's ``userErrors`` (never raised to the top)."""

    code: ErrorCode
    message: str
    field: tuple[str, ...] | None = None


class ProblemError(Exception):
    """Raised inside a transaction to roll it back and report ``problems``."""

    def __init__(self, *problems: Problem) -> None:
        super().__init__(problems[0].message if problems else "")
        self.problems = list(problems)
