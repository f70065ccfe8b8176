"""Patient sessions: opaque bearer tokens, stored as digests, revocable per patient. They
are opened only by the unit of work (``PatientChange.create_session``)."""

from __future__ import annotations

from core.clock import utcnow
from core.secrets import digest
from models import PatientSession
from onboarding.actor import Actor
from onboarding.unit_of_work import SESSION_PREFIX, patient_change, portal_usable

__all__ = ["SESSION_PREFIX", "find_session", "logout"]


async def find_session(token: str) -> PatientSession | None:
    """The live session a bearer token names. A patient whose access ended (disabled,
    chart made inactive) has none, even if a session row escaped revocation."""
    if not token.startswith(SESSION_PREFIX):
        return None
    session = (
        await PatientSession.filter(
            token_digest=digest(token), revoked_at=None, expires_at__gt=utcnow()
        )
        .select_related("account__patient")
        .first()
    )
    if session is None or not portal_usable(session.account.patient):
        return None
    return session


async def logout(actor: Actor, session: PatientSession, *, everywhere: bool) -> None:
    """Revoke the caller's session (or all of the patient's) on the server (SECURITY
    SESS-3): the bearer token stops working at once, not when it expires."""
    patient = session.account.patient
    async with patient_change(actor, [patient.id]) as change:
        if everywhere:
            await change.revoke_sessions([patient.id])
        else:
            await PatientSession.filter(id=session.id, revoked_at=None).update(revoked_at=utcnow())
        await change.record(
            actor,
            "logout",
            patient_id=patient.id,
            practice_id=patient.practice_id,
            detail={"everywhere": everywhere},
        )
