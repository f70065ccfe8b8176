"""Patient login and password change (SPEC section 3, SECURITY ENUM-4).

Unknown usernames, accounts without a password, locked accounts and expired temporary
passwords all cost one argon2 verification and answer INVALID_CREDENTIALS, exactly like
a wrong password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.passwords import Hasher
from core.settings import Settings
from models import PasswordOrigin, PatientSession, PortalAccount, Practice, RevokeReason
from models.patient import lock_patients
from onboarding import audit
from onboarding.actor import Actor
from onboarding.credentials import notify_password_changed, store_password, weak_password
from onboarding.errors import ErrorCode, Problem
from onboarding.links import revoke_links
from onboarding.sessions import create_session, revoke_sessions

INVALID = Problem(ErrorCode.INVALID_CREDENTIALS, "the username or password is not correct")


@dataclass(frozen=True)
class LoginResult:
    session_token: str | None
    must_change_password: bool
    problems: list[Problem]


def _temporary_expired(account: PortalAccount, settings: Settings) -> bool:
    return (
        account.password_origin == PasswordOrigin.STAFF
        and account.last_login_at is None
        and account.password_set_at is not None
        and account.password_set_at
        <= utcnow() - timedelta(days=settings.temporary_password_ttl_days)
    )


async def login(
    actor: Actor, username: str, password: str, *, hasher: Hasher, settings: Settings
) -> LoginResult:
    account = None
    # A NUL byte is in no username, and PostgreSQL refuses one as a parameter.
    if 0 < len(username) <= 64 and len(password) <= 128 and "\x00" not in username:
        account = (
            await PortalAccount.filter(username_key=username.strip().casefold())
            .select_related("patient")
            .first()
        )
    now = utcnow()
    usable = (
        account is not None
        and account.patient.portal_enabled
        and account.patient.chart_status in ("ACTIVE", "PROSPECTIVE")
        and not (account.locked_until and account.locked_until > now)
        and not _temporary_expired(account, settings)
        and len(password) <= 128
    )
    stored = account.password_hash if (account is not None and usable) else None
    ok, new_hash = await hasher.verify_and_update(password[:128], stored)
    if account is None:
        await audit.record(
            actor, "login.failed", outcome="failure", detail={"reason": "unknown_user"}
        )
        return LoginResult(None, False, [INVALID])
    patient = account.patient
    practice_id = patient.practice_id
    if not ok:
        await _count_failure(actor, account, practice_id, settings, locked=not usable)
        return LoginResult(None, False, [INVALID])
    async with in_transaction():
        await lock_patients([patient.id])
        updates: dict[str, object] = {
            "failed_logins": 0,
            "locked_until": None,
            "last_login_at": now,
        }
        if new_hash:
            updates["password_hash"] = new_hash  # upgraded parameters (rehash on login)
        await PortalAccount.filter(id=account.id).update(**updates)
        account.last_login_at = now
        token = await create_session(account, timedelta(minutes=settings.session_ttl_minutes))
        await audit.record(
            actor,
            "login.succeeded",
            patient_id=patient.id,
            practice_id=practice_id,
            detail={"forced_change": account.must_change_password},
        )
    return LoginResult(token, account.must_change_password, [])


async def _count_failure(
    actor: Actor, account: PortalAccount, practice_id: int, settings: Settings, *, locked: bool
) -> None:
    async with in_transaction():
        await PortalAccount.filter(id=account.id).update(failed_logins=F("failed_logins") + 1)
        await audit.record(
            actor,
            "login.failed",
            patient_id=account.patient_id,  # type: ignore[attr-defined]
            practice_id=practice_id,
            outcome="failure",
            detail={"reason": "locked" if locked else "bad_password"},
        )
        fresh = await PortalAccount.get(id=account.id)
        if fresh.failed_logins >= settings.lockout_threshold and not (
            fresh.locked_until and fresh.locked_until > utcnow()
        ):
            await PortalAccount.filter(id=account.id).update(
                failed_logins=0,
                locked_until=utcnow() + timedelta(minutes=settings.lockout_minutes),
            )
            await audit.record(
                actor,
                "login.locked_out",
                patient_id=account.patient_id,  # type: ignore[attr-defined]
                practice_id=practice_id,
                outcome="failure",
            )


@dataclass(frozen=True)
class ChangeResult:
    session_token: str | None
    problems: list[Problem]


async def change_password(
    actor: Actor,
    session: PatientSession,
    current_password: str,
    new_password: str,
    *,
    hasher: Hasher,
    settings: Settings,
) -> ChangeResult:
    account: PortalAccount = session.account
    patient = account.patient
    ok, _ = await hasher.verify_and_update(current_password[:128], account.password_hash)
    if not ok or len(current_password) > 128:
        await audit.record(
            actor,
            "password.change_failed",
            patient_id=patient.id,
            practice_id=patient.practice_id,
            outcome="failure",
        )
        return ChangeResult(
            None,
            [
                Problem(
                    ErrorCode.INVALID_CREDENTIALS,
                    "the current password is not correct",
                    ("currentPassword",),
                )
            ],
        )
    weak = weak_password(
        new_password,
        "newPassword",
        min_length=settings.password_min_length,
        username=account.username,
        email=patient.email,
    )
    if weak is None and new_password == current_password:
        weak = Problem(
            ErrorCode.PASSWORD_TOO_WEAK,
            "choose a password you have not used here",
            ("newPassword",),
        )
    if weak:
        return ChangeResult(None, [weak])
    password_hash = await hasher.hash(new_password)
    practice = await Practice.get(id=patient.practice_id)
    async with in_transaction():
        await lock_patients([patient.id])
        account = await store_password(
            patient=patient,
            account=account,
            username=None,
            password_hash=password_hash,
            origin=PasswordOrigin.PATIENT,
        )
        # Outstanding reset links belong to the old password (SECURITY TOK-5).
        await revoke_links([patient.id], RevokeReason.PASSWORD_SET)
        await revoke_sessions([patient.id])
        token = await create_session(account, timedelta(minutes=settings.session_ttl_minutes))
        await notify_password_changed(patient, practice.name, by_staff=False)
        await audit.record(
            actor, "password.changed", patient_id=patient.id, practice_id=patient.practice_id
        )
    return ChangeResult(token, [])
