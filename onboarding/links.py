"""Invitation/reset link tokens (SPEC section 3, SECURITY TOK-1..TOK-10).

A token is 256 bits from ``secrets``; only its SHA-256 digest is stored. Single use is
decided by a conditional UPDATE whose row count is 1 for exactly one redeemer, on
SQLite and PostgreSQL alike (``select_for_update`` is a no-op on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise import connections

from core.clock import utcnow
from core.secrets import digest, new_token
from models import LinkPurpose, LinkToken, Patient, RevokeReason
from onboarding.errors import ErrorCode


@dataclass(frozen=True)
class IssuedLink:
    """The raw token exists only here, on its way into the email."""

    patient_id: int
    link_id: int
    token: str
    expires_at: datetime
    sent_to: str


async def revoke_links(
    patient_ids: Sequence[int], reason: RevokeReason, *, except_link_id: int | None = None
) -> int:
    if not patient_ids:
        return 0
    query = LinkToken.filter(patient_id__in=list(patient_ids), used_at=None, revoked_at=None)
    if except_link_id is not None:
        query = query.exclude(id=except_link_id)
    return await query.update(revoked_at=utcnow(), revoke_reason=reason)


async def issue_links(
    *,
    practice_id: int,
    patients: Sequence[tuple[int, str]],
    purpose: LinkPurpose,
    ttl: timedelta,
    created_by: int | None,
) -> list[IssuedLink]:
    """Issue one link per (patient id, address) in bulk statements; call inside a
    transaction. Older outstanding links of these patients are revoked first."""
    if not patients:
        return []
    now = utcnow()
    expires_at = now + ttl
    patient_ids = [pid for pid, _ in patients]
    # Lock the charts (in id order, so overlapping batches cannot deadlock): a second
    # issue for the same patient (a double click) waits for this one to commit and then
    # revokes its link, instead of both revoking nothing and leaving two usable links.
    await Patient.filter(id__in=patient_ids).order_by("id").select_for_update()
    await revoke_links(patient_ids, RevokeReason.SUPERSEDED)
    tokens = {pid: new_token() for pid in patient_ids}
    rows = [
        LinkToken(
            practice_id=practice_id,
            patient_id=pid,
            digest=digest(tokens[pid]),
            purpose=purpose,
            sent_to=address,
            created_by_id=created_by,
            created_at=now,
            expires_at=expires_at,
        )
        for pid, address in patients
    ]
    await LinkToken.bulk_create(rows, batch_size=1000)
    ids: dict[str, int] = {}
    digests = [r.digest for r in rows]
    for start in range(0, len(digests), 1000):
        chunk = digests[start : start + 1000]
        for link_id, link_digest in await LinkToken.filter(digest__in=chunk).values_list(
            "id", "digest"
        ):
            ids[link_digest] = link_id
    await _point_patients_at_newest_link(patient_ids)
    return [
        IssuedLink(
            patient_id=r.patient_id,  # type: ignore[attr-defined]
            link_id=ids[r.digest],
            token=tokens[r.patient_id],  # type: ignore[attr-defined]
            expires_at=expires_at,
            sent_to=r.sent_to,
        )
        for r in rows
    ]


async def _point_patients_at_newest_link(patient_ids: Sequence[int]) -> None:
    conn = connections.get("default")
    dialect = conn.capabilities.dialect
    for start in range(0, len(patient_ids), 1000):
        chunk = list(patient_ids[start : start + 1000])
        if dialect == "sqlite":
            marks = ", ".join("?" for _ in chunk)
        else:
            marks = ", ".join(f"${i + 1}" for i in range(len(chunk)))
        await conn.execute_query(
            "UPDATE patient SET last_link_id = (SELECT MAX(l.id) FROM link_token l"
            f" WHERE l.patient_id = patient.id) WHERE id IN ({marks})",
            chunk,
        )


@dataclass(frozen=True)
class LinkState:
    link: LinkToken | None
    error: ErrorCode | None


async def find_link(token: str) -> LinkState:
    """The link a token names, or why it cannot be used. Unknown and revoked links both
    answer TOKEN_INVALID: a holder learns nothing about the patient."""
    if not token or len(token) > 100:
        return LinkState(None, ErrorCode.TOKEN_INVALID)
    link = await LinkToken.filter(digest=digest(token)).select_related("patient").first()
    if link is None or link.revoked_at is not None:
        return LinkState(link, ErrorCode.TOKEN_INVALID)
    if link.used_at is not None:
        return LinkState(link, ErrorCode.TOKEN_USED)
    if link.expires_at <= utcnow():
        return LinkState(link, ErrorCode.TOKEN_EXPIRED)
    patient: Patient = link.patient
    if not patient.portal_enabled or patient.chart_status not in ("ACTIVE", "PROSPECTIVE"):
        return LinkState(link, ErrorCode.TOKEN_INVALID)
    return LinkState(link, None)


async def consume(link_id: int) -> bool:
    """Mark the link used; True for exactly one caller (call inside the transaction that
    sets the password, so a failed write leaves the link usable)."""
    now = utcnow()
    changed = await LinkToken.filter(
        id=link_id, used_at=None, revoked_at=None, expires_at__gt=now
    ).update(used_at=now)
    return changed == 1
