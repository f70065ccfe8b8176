"""Usernames and passwords: the rules, availability, staff-set credentials (SPEC 2.4), and
the one place where a new password lands on an account."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.passwords import Hasher, password_problems
from mail import compose, outbox
from models import (
    INVITABLE_CHART_STATUSES,
    PasswordOrigin,
    Patient,
    PortalAccount,
    Practice,
    RevokeReason,
)
from models.patient import lock_patients
from onboarding import audit
from onboarding.actor import Actor
from onboarding.errors import ErrorCode, Problem, ProblemError
from onboarding.links import revoke_links
from onboarding.sessions import revoke_sessions

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


@dataclass(frozen=True)
class UsernameCheck:
    valid: bool
    available: bool
    reason: str | None


async def check_username(
    username: str, *, own_email: str | None, patient_id: int | None = None
) -> UsernameCheck:
    reason = username_problem(username, own_email=own_email)
    if reason:
        return UsernameCheck(False, False, reason)
    holder = await PortalAccount.filter(username_key=username_key(username)).first()
    if holder is not None and holder.patient_id != patient_id:  # type: ignore[attr-defined]
        return UsernameCheck(True, False, "already taken")
    return UsernameCheck(True, True, None)


def weak_password(password: str, field: str, **context: str | int | None) -> Problem | None:
    problems = password_problems(password, **context)  # type: ignore[arg-type]
    if not problems:
        return None
    return Problem(
        ErrorCode.PASSWORD_TOO_WEAK,
        "password is " + "; ".join(p.value for p in problems),
        (field,),
    )


def username_taken(field: str = "username") -> Problem:
    return Problem(ErrorCode.USERNAME_TAKEN, "that username is taken", (field,))


async def store_password(
    *,
    patient: Patient,
    account: PortalAccount | None,
    username: str | None,
    password_hash: str | None,
    origin: PasswordOrigin,
) -> PortalAccount:
    """Create or update the account inside the caller's transaction. A duplicate
    username surfaces as IntegrityError from the unique index (race-safe)."""
    now = utcnow()
    if account is None:
        assert username is not None
        account = PortalAccount(
            patient_id=patient.id, username=username, username_key=username_key(username)
        )
    elif username is not None:
        account.username = username
        account.username_key = username_key(username)
    if password_hash is not None:
        account.password_hash = password_hash
        account.password_origin = origin
        account.password_set_at = now
        account.must_change_password = origin is PasswordOrigin.STAFF
        # A new password clears a lock-out (SPEC section 3).
        account.failed_logins = 0
        account.locked_until = None
    await account.save()
    return account


async def notify_password_changed(patient: Patient, practice_name: str, *, by_staff: bool) -> None:
    """Tell the patient (never the password) and rely on the caller to revoke sessions
    in the same transaction (SPEC 7.7, SECURITY NOTIF-1)."""
    if not patient.email:
        return
    draft = compose.password_changed(
        practice_name=practice_name,
        first_name=patient.first_name,
        by_staff=by_staff,
        when=utcnow(),
    )
    await outbox.enqueue(
        [
            outbox.message(
                practice_id=patient.practice_id,  # type: ignore[attr-defined]
                patient_id=patient.id,
                to_addr=patient.email,
                draft=draft,
            )
        ]
    )


@dataclass
class CredentialsResult:
    account: PortalAccount | None
    problems: list[Problem]
    mail_queued: bool = False


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
    patient = await Patient.filter(id=patient_id, practice_id=actor.practice_id).first()
    if patient is None:
        return CredentialsResult(
            None, [Problem(ErrorCode.NOT_FOUND, "no such patient", ("patientId",))]
        )
    if patient.chart_status not in INVITABLE_CHART_STATUSES:
        return CredentialsResult(
            None,
            [
                Problem(
                    ErrorCode.INACTIVE_PATIENT, "the chart is inactive or deceased", ("patientId",)
                )
            ],
        )
    if not patient.portal_enabled:
        return CredentialsResult(
            None, [Problem(ErrorCode.PORTAL_DISABLED, "enable portal access first", ("patientId",))]
        )
    problems: list[Problem] = []
    username = username.strip()
    reason = username_problem(username, own_email=patient.email)
    if reason:
        problems.append(Problem(ErrorCode.USERNAME_INVALID, f"username {reason}", ("username",)))
    if password is not None:
        weak = weak_password(
            password, "password", min_length=min_length, username=username, email=patient.email
        )
        if weak:
            problems.append(weak)
    if problems:
        return CredentialsResult(None, problems)
    password_hash = await hasher.hash(password) if password is not None else None
    practice = await Practice.get(id=patient.practice_id)  # type: ignore[attr-defined]
    try:
        async with in_transaction():
            await lock_patients([patient.id])
            account = await PortalAccount.filter(patient_id=patient.id).select_for_update().first()
            account = await store_password(
                patient=patient,
                account=account,
                username=username,
                password_hash=password_hash,
                origin=PasswordOrigin.STAFF,
            )
            if password_hash is not None:
                # The patient now signs in with what staff told them: outstanding links
                # and sessions belong to the old credentials.
                await revoke_links([patient.id], RevokeReason.PASSWORD_SET)
                await revoke_sessions([patient.id])
                await notify_password_changed(patient, practice.name, by_staff=True)
            await audit.record(
                actor,
                "credentials.set",
                patient_id=patient.id,
                detail={"typed_by_staff": password_hash is not None},
            )
    except IntegrityError:
        return CredentialsResult(None, [username_taken()])
    except ProblemError as exc:
        return CredentialsResult(None, exc.problems)
    return CredentialsResult(
        account, [], mail_queued=password_hash is not None and bool(patient.email)
    )
