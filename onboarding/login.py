"""Patient login and password change (SPEC section 3, SECURITY ENUM-4).

Unknown usernames, accounts without a password, locked accounts, disabled or inactive
patients and expired temporary passwords all cost one argon2 verification and answer
INVALID_CREDENTIALS, exactly like a wrong password.

The verification is slow, so it runs outside the patient's lock; the outcome is decided
inside it (``onboarding.unit_of_work``), on the account as it is then. A reset, a
disable or a lock-out that commits while the password is being verified wins: the
request then fails like a wrong password and opens no session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from core.clock import utcnow
from core.passwords import Hasher, normalize
from core.settings import Settings
from models import PasswordOrigin, Patient, PatientSession, PortalAccount
from onboarding import audit, checkpoints
from onboarding.actor import Actor
from onboarding.credentials import weak_password
from onboarding.errors import ErrorCode, Problem
from onboarding.sql import Params, columns_of, connection, dialect_of
from onboarding.unit_of_work import (
    PatientChange,
    locked,
    patient_change,
    portal_usable,
    temporary_expired,
)

INVALID = Problem(ErrorCode.INVALID_CREDENTIALS, "the username or password is not correct")
MAX_PASSWORD = 128


@dataclass(frozen=True)
class LoginResult:
    session_token: str | None
    must_change_password: bool
    problems: list[Problem]


@cache
def _named_sql() -> str:
    """The account and its patient in one row, each column prefixed by its table."""
    return (
        f"SELECT {columns_of(PortalAccount, 'a')}, {columns_of(Patient, 'p')}"  # noqa: S608 (model columns)
        " FROM portal_account a JOIN patient p ON p.id = a.patient_id WHERE a.username_key = "
    )


async def _account_named(username_key: str) -> PortalAccount | None:
    """The account of a username (unique) with its patient, read without a lock: what
    the verification goes on; everything is read again under the lock before a session
    is opened. One hand-written statement and Tortoise's own row-to-model step: building
    the ORM query (with its join) cost a login more event-loop time than running it."""
    conn = connection()
    params = Params(dialect_of(conn))
    rows = await conn.execute_query_dict(_named_sql() + params(username_key), params.values)
    if not rows:
        return None
    row = rows[0]
    account = PortalAccount._init_from_db(
        **{key[2:]: value for key, value in row.items() if key[0] == "a"}
    )
    account.patient = Patient._init_from_db(
        **{key[2:]: value for key, value in row.items() if key[0] == "p"}
    )
    return account


def _usable(account: PortalAccount, settings: Settings, now: datetime) -> bool:
    """May this account sign in at all? The one rule login and changePassword share."""
    return (
        portal_usable(account.patient)
        and not locked(account, now)
        and not temporary_expired(account, settings, now)
    )


def _still_usable(
    change: PatientChange, seen: PortalAccount, settings: Settings
) -> PortalAccount | None:
    """The account as read under the lock, if everything the verification relied on
    still holds: same password (hash), access, chart, no lock-out, no expiry."""
    patient = change.patient(seen.patient_id)
    fresh = change.account(seen.patient_id)
    if patient is None or fresh is None or fresh.id != seen.id:
        return None
    fresh.patient = patient
    if fresh.password_hash != seen.password_hash or not _usable(fresh, settings, utcnow()):
        return None
    return fresh


async def login(
    actor: Actor, username: str, password: str, *, hasher: Hasher, settings: Settings
) -> LoginResult:
    if len(password) > MAX_PASSWORD:
        # No password is this long, so it is no guess at any account: refused before
        # any hashing (a 10,000-character one would cost a full argon2 run), and the
        # fast answer says nothing about the username.
        await audit.record(actor, "login.failed", outcome="failure", detail={"reason": "too_long"})
        return LoginResult(None, False, [INVALID])
    account = None
    # A NUL byte is in no username, and PostgreSQL refuses one as a parameter.
    if 0 < len(username) <= 64 and "\x00" not in username:
        account = await _account_named(username.strip().casefold())
    usable = account is not None and _usable(account, settings, utcnow())
    stored = account.password_hash if (account is not None and usable) else None
    ok, new_hash = await hasher.verify_and_update(password, stored)
    if account is None:
        await audit.record(
            actor, "login.failed", outcome="failure", detail={"reason": "unknown_user"}
        )
        return LoginResult(None, False, [INVALID])
    await checkpoints.reached("login.verified")
    patient_id = account.patient_id
    async with patient_change(actor, [patient_id]) as change:
        fresh = _still_usable(change, account, settings) if ok else None
        if fresh is None:
            current = change.account(patient_id)
            if current is not None:
                # Only a wrong password counts; a right one that lost to a reset or a
                # lock-out committed meanwhile is refused without counting.
                reason = "bad_password" if not ok and usable else "unusable" if not ok else "stale"
                await change.count_login_failure(current, settings, reason=reason, count=not ok)
            return LoginResult(None, False, [INVALID])
        token = await change.start_session(fresh, settings, new_hash=new_hash)
        # The patient is the actor of their own successful login.
        await change.record(
            actor.as_patient(patient_id, fresh.patient.practice_id),
            "login.succeeded",
            patient_id=patient_id,
            practice_id=fresh.patient.practice_id,
            detail={"forced_change": fresh.must_change_password},
        )
    return LoginResult(token, fresh.must_change_password, [])


@dataclass(frozen=True)
class ChangeResult:
    session_token: str | None
    problems: list[Problem]


WRONG_CURRENT = Problem(
    ErrorCode.INVALID_CREDENTIALS, "the current password is not correct", ("currentPassword",)
)


async def change_password(
    actor: Actor,
    session: PatientSession,
    current_password: str,
    new_password: str,
    *,
    hasher: Hasher,
    settings: Settings,
) -> ChangeResult:
    """A wrong current password counts toward lock-out exactly as a wrong login does, and
    a locked account's guesses are refused like wrong ones (no password oracle)."""
    if len(current_password) > MAX_PASSWORD:
        return ChangeResult(None, [WRONG_CURRENT])  # no password is this long: no hashing
    account: PortalAccount = session.account
    patient = account.patient
    usable = not locked(account, utcnow())
    usable = usable and portal_usable(patient)
    stored = account.password_hash if usable else None
    ok, _ = await hasher.verify_and_update(current_password, stored)
    password_hash = None

    def judged(username: str, email: str | None) -> Problem | None:
        return weak_password(
            new_password,
            "newPassword",
            min_length=settings.password_min_length,
            username=username,
            email=email,
        )

    if ok:
        weak = judged(account.username, patient.email)
        # The same password typed in another Unicode form is the same password.
        if weak is None and normalize(new_password) == normalize(current_password):
            weak = Problem(
                ErrorCode.PASSWORD_TOO_WEAK,
                "choose a password you have not used here",
                ("newPassword",),
            )
        if weak:
            return ChangeResult(None, [weak])
        password_hash = await hasher.hash(new_password)
    await checkpoints.reached("change_password.hashed")
    async with patient_change(actor, [patient.id]) as change:
        fresh = change.account(patient.id)
        current_patient = change.patient(patient.id)
        if fresh is None or current_patient is None:
            return ChangeResult(None, [WRONG_CURRENT])
        fresh.patient = current_patient
        holds = (
            password_hash is not None
            and fresh.id == account.id
            and fresh.password_hash == account.password_hash
            and portal_usable(current_patient)
            and not locked(fresh, utcnow())
            and await change.session_live(session.id)
        )
        if not holds:
            await change.count_login_failure(
                fresh, settings, reason="change_password", count=not ok
            )
            return ChangeResult(None, [WRONG_CURRENT])
        # Judged again on the username and address now on file: staff may have changed
        # either while the password was hashed.
        if weak := judged(fresh.username, current_patient.email):
            return ChangeResult(None, [weak])
        fresh = await change.set_password(
            current_patient,
            fresh,
            username=None,
            password_hash=password_hash,
            origin=PasswordOrigin.PATIENT,
        )
        token = await change.create_session(fresh, settings)
        await change.record(
            actor, "password.changed", patient_id=patient.id, practice_id=patient.practice_id
        )
    return ChangeResult(token, [])
