"""Usernames and passwords: the rules, availability and staff-set credentials (SPEC 2.4).
A new password lands on an account only through the unit of work
(``PatientChange.set_password``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from core.passwords import Hasher, password_problems
from models import INVITABLE_CHART_STATUSES, PasswordOrigin, Patient, PortalAccount
from onboarding import checkpoints
from onboarding.actor import Actor
from onboarding.errors import ErrorCode, Problem
from onboarding.unit_of_work import patient_change

USERNAME_MIN, USERNAME_MAX = 3, 64
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\-]*$")


def username_key(username: str) -> str:
    return username.casefold()


def username_problem(username: str, *, own_email: str | None) -> str | None:
    """Why ``username`` is not acceptable, or None. A username that is an email address
    must be the patient's own address on file, so it cannot impersonate (SPEC 7.8)."""
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX:
        return f"must be {USERNAME_MIN} to {USERNAME_MAX} characters"
    if not _USERNAME.match(username):
        return (
            "may contain only letters, digits and . _ @ + - and must start with a letter or digit"
        )
    if "@" in username and (own_email is None or username.casefold() != own_email.casefold()):
        return "an email address can only be the patient's own address on file"
    return None


STAFF_EMAIL_USERNAME = (
    "cannot be an email address when staff choose it; the patient can choose their own"
    " address when they open their link"
)


def staff_username_problem(username: str) -> str | None:
    """Staff never choose an email-shaped username: otherwise staff of one practice could
    learn (or squat) whether an address is a patient's username anywhere in the
    deployment, by creating a chart with that address and asking. Only the patient,
    redeeming a link sent to that very address, can take it (SPEC 7.8)."""
    if "@" in username:
        return STAFF_EMAIL_USERNAME
    return username_problem(username, own_email=None)


@dataclass(frozen=True)
class UsernameCheck:
    valid: bool
    available: bool
    reason: str | None


async def check_username(username: str, *, patient_id: int | None = None) -> UsernameCheck:
    """usernameAvailable, for staff: the same rule as setCredentials."""
    reason = staff_username_problem(username)
    if reason:
        return UsernameCheck(False, False, reason)
    holder = await PortalAccount.filter(username_key=username_key(username)).first()
    if holder is not None and holder.patient_id != patient_id:
        return UsernameCheck(True, False, "already taken")
    return UsernameCheck(True, True, None)


def weak_password(password: str, field: str, **context: str | int | None) -> Problem | None:
    problems = password_problems(password, **context)  # type: ignore[arg-type]
    if not problems:
        return None
    return Problem(
        ErrorCode.PASSWORD_TOO_WEAK,
        "the password " + " and ".join(p.value for p in problems),
        (field,),
    )


def username_taken(field: str = "username") -> Problem:
    return Problem(ErrorCode.USERNAME_TAKEN, "that username is taken", (field,))


@dataclass
class CredentialsResult:
    account: PortalAccount | None
    problems: list[Problem]


async def set_credentials(
    actor: Actor,
    patient_id: int,
    username: str,
    password: str | None,
    *,
    hasher: Hasher,
    min_length: int,
) -> CredentialsResult:
    """Staff type a username and, optionally, a password (SPEC 2.4). A staff-typed
    password must be changed at the next login (SECURITY NOTIF-2)."""
    assert actor.practice_id is not None
    patient = await Patient.filter(id=patient_id, practice_id=actor.practice_id).first()
    if patient is None:
        return CredentialsResult(None, [NO_SUCH_PATIENT])
    if problem := _eligibility_problem(patient):
        return CredentialsResult(None, [problem])
    problems: list[Problem] = []
    username = username.strip()
    reason = staff_username_problem(username)
    if reason:
        problems.append(
            Problem(ErrorCode.USERNAME_INVALID, f"the username {reason}", ("username",))
        )
    if password is not None:
        weak = weak_password(
            password, "password", min_length=min_length, username=username, email=patient.email
        )
        if weak:
            problems.append(weak)
    if problems:
        return CredentialsResult(None, problems)
    password_hash = await hasher.hash(password) if password is not None else None
    await checkpoints.reached("set_credentials.hashed")
    try:
        async with patient_change(actor, [patient.id], practice_id=actor.practice_id) as change:
            current = change.patient(patient.id)
            if current is None:
                return CredentialsResult(None, [NO_SUCH_PATIENT])
            # Checked again under the lock: a disable or a chart made inactive while the
            # password was hashed wins.
            if problem := _eligibility_problem(current):
                return CredentialsResult(None, [problem])
            # Judged again on the address on file now: it may have changed while hashing.
            if password is not None and (
                weak := weak_password(
                    password,
                    "password",
                    min_length=min_length,
                    username=username,
                    email=current.email,
                )
            ):
                return CredentialsResult(None, [weak])
            account = await change.set_password(
                current,
                change.account(patient.id),
                username=username,
                password_hash=password_hash,
                origin=PasswordOrigin.STAFF,
            )
            await change.record(
                actor,
                "credentials.set",
                patient_id=patient.id,
                detail={"typed_by_staff": password_hash is not None},
            )
    except IntegrityError:
        return CredentialsResult(None, [username_taken()])
    return CredentialsResult(account, [])


NO_SUCH_PATIENT = Problem(ErrorCode.NOT_FOUND, "no such patient", ("patientId",))


def _eligibility_problem(patient: Patient) -> Problem | None:
    if patient.chart_status not in INVITABLE_CHART_STATUSES:
        return Problem(
            ErrorCode.INACTIVE_PATIENT, "the chart is inactive or deceased", ("patientId",)
        )
    if not patient.portal_enabled:
        return Problem(ErrorCode.PORTAL_DISABLED, "enable portal access first", ("patientId",))
    return None
