"""Patient sessions: opaque bearer tokens, stored as digests, revocable per patient."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from core.clock import utcnow
from core.secrets import digest, new_token
from models import PatientSession, PortalAccount

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
