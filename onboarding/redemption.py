"""The emailed link, opened: tokenInfo and redeemToken (SPEC section 4, 7.1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from tortoise.exceptions import IntegrityError

from core.clock import utcnow
from core.passwords import Hasher
from core.settings import Settings
from models import LinkToken, PasswordOrigin, Patient, PortalAccount, RevokeReason
from onboarding import audit, checkpoints
from onboarding.actor import Actor
from onboarding.credentials import username_problem, username_taken, weak_password
from onboarding.errors import ErrorCode, Problem, ProblemError
from onboarding.invitations import shared_address_counts
from onboarding.links import find_link
from onboarding.unit_of_work import PatientChange, link_problem, patient_change

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
        shared = await shared_address_counts(patient.practice_id, [patient.email_key])
        if shared.get(patient.email_key, 0) > 1:
            return True
    return False


async def token_info(token: str, settings: Settings) -> TokenInfo:
    state = await find_link(token)
    if state.error or state.link is None:
        return TokenInfo(False, state.error, False, None, None, False)
    link = state.link
    account = await PortalAccount.filter(patient_id=link.patient_id).first()
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
    """Two short locked steps around the slow hash. The first decides the date of birth
    under the lock, on the link as it is then: once the wrong answers that revoke the
    link are counted, every later request answers TOKEN_INVALID, right date or wrong,
    so a burst of guesses learns nothing (SPEC 7.1). The second consumes the link and
    stores the password only if the link is still usable."""
    state = await find_link(token)
    if state.error or state.link is None:
        return await _refused(actor, state.link, state.error or ErrorCode.TOKEN_INVALID)
    await checkpoints.reached("redeem.link_found")
    link_id = state.link.id
    patient_id = state.link.patient_id
    account: PortalAccount | None = None
    async with patient_change(actor, [patient_id]) as change:
        link, error = await change.link(link_id)
        patient = change.patient(patient_id)
        if error or link is None or patient is None:
            refused = error or ErrorCode.TOKEN_INVALID
        else:
            refused = None
            link.patient = patient
            account = change.account(patient_id)
            if (
                await _dob_required(link, account, settings)
                and date_of_birth != patient.date_of_birth
            ):
                return None, [await _dob_mismatch(change, actor, link_id, patient, settings)]
    if refused:
        return await _refused(actor, state.link, refused)
    assert patient is not None and link is not None

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

    def judged(account: PortalAccount | None, email: str | None) -> Problem | None:
        return weak_password(
            password,
            "password",
            min_length=settings.password_min_length,
            username=chosen_username or (account.username if account else None),
            email=email,
        )

    if weak := judged(account, patient.email):
        problems.append(weak)
    if problems:
        return None, problems  # the link stays usable: nothing was written

    password_hash = await hasher.hash(password)
    await checkpoints.reached("redeem.hashed")
    try:
        async with patient_change(actor, [patient_id]) as change:
            current = change.patient(patient_id)
            fresh_account = change.account(patient_id)
            if current is not None and (await change.link(link_id))[1] is None:
                # What the first step and the password's checks were based on may have
                # changed while hashing (the account came into use, staff renamed it,
                # the address changed): decided again on what is there now, before
                # anything is written, as a request arriving now would be.
                link.patient = current
                if (
                    await _dob_required(link, fresh_account, settings)
                    and date_of_birth != current.date_of_birth
                ):
                    return None, [await _dob_mismatch(change, actor, link_id, current, settings)]
                if weak := judged(fresh_account, current.email):
                    return None, [weak]
            if current is None or not await change.consume_link(link_id):
                # Lost the race, or the link expired or was revoked while hashing.
                _, error = await change.link(link_id)
                raise ProblemError(Problem(error or ErrorCode.TOKEN_INVALID, CANNOT, ("token",)))
            if link_problem(link, current, utcnow()) == ErrorCode.TOKEN_INVALID:
                # Access ended (disabled, chart inactive) after the first look.
                raise ProblemError(Problem(ErrorCode.TOKEN_INVALID, CANNOT, ("token",)))
            if (fresh_account is None) != (account is None):
                # An account appeared (or went) meanwhile: the username question was
                # answered for the other case. Ask again with this link.
                raise ProblemError(Problem(ErrorCode.TOKEN_INVALID, CANNOT, ("token",)))
            account = await change.set_password(
                current,
                fresh_account,
                username=chosen_username,
                password_hash=password_hash,
                origin=PasswordOrigin.PATIENT,
                revoke_reason=RevokeReason.REDEEMED_OTHER,
            )
            # The patient is the actor of their own redemption.
            await change.record(
                actor.as_patient(patient_id, current.practice_id),
                "link.redeemed",
                patient_id=patient_id,
                practice_id=current.practice_id,
                detail={
                    "purpose": link.purpose.value,
                    "account_created": chosen_username is not None,
                },
            )
    except IntegrityError:
        return None, [username_taken()]
    except ProblemError as exc:
        return await _refused(actor, link, exc.problems[0].code)
    return account, []


CANNOT = "this link cannot be used"


async def _dob_mismatch(
    change: PatientChange, actor: Actor, link_id: int, patient: Patient, settings: Settings
) -> Problem:
    """Counts the wrong answer on the link (enough of them revoke it) and audits it."""
    failures = await change.count_dob_failure(link_id, settings.redeem_dob_max_failures)
    await change.record(
        actor,
        "link.dob_mismatch",
        patient_id=patient.id,
        practice_id=patient.practice_id,
        outcome="failure",
        detail={"failures": failures},
    )
    return Problem(
        ErrorCode.DATE_OF_BIRTH_MISMATCH, "the date of birth does not match", ("dateOfBirth",)
    )


async def _refused(
    actor: Actor, link: LinkToken | None, code: ErrorCode
) -> tuple[None, list[Problem]]:
    if link is not None:
        await audit.record(
            actor,
            "link.redeem_refused",
            patient_id=link.patient_id,
            practice_id=link.practice_id,
            outcome="failure",
            detail={"reason": code.value},
        )
    return None, [Problem(code, CANNOT, ("token",))]
