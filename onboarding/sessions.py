"""Patient sessions: opaque bearer tokens, stored as digests, revocable per patient."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.secrets import digest, new_token
from models import PatientSession, PortalAccount
from onboarding import audit
from onboarding.actor import Actor

SESSION_PREFIX = "ses_"


async def create_session(account: PortalAccount, ttl: timedelta) -> str:
    token = SESSION_PREFIX + new_token()
    await PatientSession.create(
        account=account,
        token_digest=digest(token),
        full_access=not account.must_change_password,
        expires_at=utcnow() + ttl,
    )
    return token


async def find_session(token: str) -> PatientSession | None:
    if not token.startswith(SESSION_PREFIX):
        return None
    return (
        await PatientSession.filter(
            token_digest=digest(token), revoked_at=None, expires_at__gt=utcnow()
        )
        .select_related("account__patient")
        .first()
    )


async def revoke_sessions(patient_ids: Sequence[int]) -> int:
    if not patient_ids:
        return 0
    return await PatientSession.filter(
        account__patient_id__in=list(patient_ids), revoked_at=None
    ).update(revoked_at=utcnow())


async def logout(actor: Actor, session: PatientSession, *, everywhere: bool) -> None:
    """Revoke the caller's session (or all of the patient's) on the server (SECURITY
    SESS-3): the bearer token stops working at once, not when it expires."""
    patient = session.account.patient
    async with in_transaction():
        if everywhere:
            await revoke_sessions([patient.id])
        else:
            await PatientSession.filter(id=session.id, revoked_at=None).update(revoked_at=utcnow())
        await audit.record(
            actor,
            "logout",
            patient_id=patient.id,
            practice_id=patient.practice_id,
            detail={"everywhere": everywhere},
        )
