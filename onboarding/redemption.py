"""The emailed link, opened: tokenInfo and redeemToken (SPEC section 4, 7.1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.passwords import Hasher
from core.settings import Settings
from models import LinkToken, PasswordOrigin, Patient, PortalAccount, Practice, RevokeReason
from models.patient import lock_patients
from onboarding import audit
from onboarding.actor import Actor
from onboarding.credentials import (
    notify_password_changed,
    store_password,
    username_problem,
    username_taken,
    weak_password,
)
from onboarding.errors import ErrorCode, Problem, ProblemError
from onboarding.invitations import shared_address_counts
from onboarding.links import consume, find_link, revoke_links
from onboarding.sessions import revoke_sessions

RECENT_EMAIL_CHANGE = timedelta(days=30)


@dataclass(frozen=True)
class TokenInfo:
    valid: bool
    error: ErrorCode | None
    username_required: bool
    username: str | None
    expires_at: datetime | None
    date_of_birth_required: bool


async def _dob_required(link: LinkToken, account: PortalAccount | None, settings: Settings) -> bool:
    if settings.redeem_dob == "always":
        return True
    if settings.redeem_dob == "never":
        return False
    patient: Patient = link.patient
    if account is not None and (
        account.last_login_at or account.password_origin == PasswordOrigin.PATIENT
    ):
        return True  # resets an account that is already in use
    if patient.email_changed_at and patient.email_changed_at > utcnow() - RECENT_EMAIL_CHANGE:
        return True
    if patient.email_key:
        shared = await shared_address_counts(patient.practice_id, [patient.email_key])  # type: ignore[attr-defined]
        if shared.get(patient.email_key, 0) > 1:
            return True
    return False


async def token_info(token: str, settings: Settings) -> TokenInfo:
    state = await find_link(token)
    if state.error or state.link is None:
        return TokenInfo(False, state.error, False, None, None, False)
    link = state.link
    account = await PortalAccount.filter(patient_id=link.patient_id).first()  # type: ignore[attr-defined]
    return TokenInfo(
        valid=True,
        error=None,
        username_required=account is None,
        username=account.username if account else None,
        expires_at=link.expires_at,
        date_of_birth_required=await _dob_required(link, account, settings),
    )


async def redeem_token(
    actor: Actor,
    token: str,
    username: str | None,
    password: str,
    date_of_birth: date | None,
    *,
    hasher: Hasher,
    settings: Settings,
) -> tuple[PortalAccount | None, list[Problem]]:
    state = await find_link(token)
    if state.error or state.link is None:
        if state.link is not None:
            await audit.record(
                actor,
                "link.redeem_refused",
                patient_id=state.link.patient_id,  # type: ignore[attr-defined]
                practice_id=state.link.practice_id,  # type: ignore[attr-defined]
                outcome="failure",
                detail={"reason": state.error.value if state.error else None},
            )
        return None, [
            Problem(state.error or ErrorCode.TOKEN_INVALID, "this link cannot be used", ("token",))
        ]
    link = state.link
    patient: Patient = link.patient
    account = await PortalAccount.filter(patient_id=patient.id).first()

    if await _dob_required(link, account, settings):
        if date_of_birth != patient.date_of_birth:
            async with in_transaction():
                await lock_patients([patient.id])
                await LinkToken.filter(id=link.id).update(dob_failures=F("dob_failures") + 1)
                # The count in the row decides, not the copy read earlier: concurrent wrong
                # answers would otherwise each see one failure and never revoke the link.
                await LinkToken.filter(
                    id=link.id,
                    used_at=None,
                    revoked_at=None,
                    dob_failures__gte=settings.redeem_dob_max_failures,
                ).update(revoked_at=utcnow(), revoke_reason=RevokeReason.TOO_MANY_ATTEMPTS)
            counted = await LinkToken.filter(id=link.id).values_list("dob_failures", flat=True)
            failures = counted[0]
            await audit.record(
                actor,
                "link.dob_mismatch",
                patient_id=patient.id,
                practice_id=link.practice_id,
                outcome="failure",  # type: ignore[attr-defined]
                detail={"failures": failures},
            )
            return None, [
                Problem(
                    ErrorCode.DATE_OF_BIRTH_MISMATCH,
                    "the date of birth does not match",
                    ("dateOfBirth",),
                )
            ]

    problems: list[Problem] = []
    chosen_username: str | None = None
    if account is None:
        if not username:
            problems.append(Problem(ErrorCode.USERNAME_INVALID, "choose a username", ("username",)))
        else:
            chosen_username = username.strip()
            reason = username_problem(chosen_username, own_email=patient.email)
            if reason:
                problems.append(
                    Problem(ErrorCode.USERNAME_INVALID, f"username {reason}", ("username",))
                )
    effective_username = chosen_username or (account.username if account else None)
    weak = weak_password(
        password,
        "password",
        min_length=settings.password_min_length,
        username=effective_username,
        email=patient.email,
    )
    if weak:
        problems.append(weak)
    if problems:
        return None, problems  # the link stays usable: nothing was written

    password_hash = await hasher.hash(password)
    practice = await Practice.get(id=patient.practice_id)  # type: ignore[attr-defined]
    try:
        async with in_transaction():
            await lock_patients([patient.id])
            if not await consume(link.id):
                # Lost the race, or the link expired while the password was hashed.
                fresh = await LinkToken.get(id=link.id)
                code = (
                    ErrorCode.TOKEN_USED
                    if fresh.used_at
                    else (
                        ErrorCode.TOKEN_EXPIRED
                        if fresh.revoked_at is None
                        else ErrorCode.TOKEN_INVALID
                    )
                )
                raise ProblemError(Problem(code, "this link cannot be used", ("token",)))
            account = await store_password(
                patient=patient,
                account=account,
                username=chosen_username,
                password_hash=password_hash,
                origin=PasswordOrigin.PATIENT,
            )
            await revoke_links([patient.id], RevokeReason.REDEEMED_OTHER)
            await revoke_sessions([patient.id])
            await notify_password_changed(patient, practice.name, by_staff=False)
            await audit.record(
                actor,
                "link.redeemed",
                patient_id=patient.id,
                practice_id=patient.practice_id,  # type: ignore[attr-defined]
                detail={
                    "purpose": link.purpose.value,
                    "account_created": chosen_username is not None,
                },
            )
    except IntegrityError:
        return None, [username_taken()]
    except ProblemError as exc:
        await audit.record(
            actor,
            "link.redeem_refused",
            patient_id=patient.id,
            practice_id=patient.practice_id,
            outcome="failure",  # type: ignore[attr-defined]
            detail={"reason": exc.problems[0].code.value},
        )
        return None, exc.problems
    return account, []
