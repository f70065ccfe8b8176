"""Invitation/reset link tokens (SPEC section 3, SECURITY TOK-1..TOK-10).

A token is 256 bits from ``secrets``; only its SHA-256 digest is stored. Single use is
decided by a conditional UPDATE whose row count is 1 for exactly one redeemer, on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise import connections

from core.clock import utcnow
from core.secrets import digest, new_token
from models import DeliveryStatus, LinkPurpose, LinkToken, Patient, RevokeReason
from models.bulk import id_list, id_list_value, insert_rows, set_column
from models.patient import lock_patients
from onboarding.errors import ErrorCode
from onboarding.sql import Params


@dataclass(frozen=True)
class IssuedLink:
    """The raw token exists only here, on its way into the email."""

    patient_id: int
    link_id: int
    token: str
    expires_at: datetime
    sent_to: str


LINK_COLUMNS = (
    ("practice_id", "int"),
    ("patient_id", "int"),
    ("digest", "text"),
    ("purpose", "text"),
    ("sent_to", "text"),
    ("created_by_id", "int"),
    ("created_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("delivery_status", "text"),
    ("dob_failures", "int"),
    ("is_reminder", "bool"),
)


async def revoke_links(
    patient_ids: Sequence[int], reason: RevokeReason, *, keep: Sequence[int] = ()
) -> None:
    """Revoke every outstanding link of these patients but those in ``keep`` (one
    statement, one parameter for the ids: a bulk invitation revokes for 10,000)."""
    if not patient_ids:
        return
    conn = connections.get("default")
    params = Params(conn.capabilities.dialect)
    dialect = params.dialect
    now, why = params(utcnow()), params(reason.value)
    ids = id_list(dialect, "patient_id", params(id_list_value(dialect, patient_ids)))
    sql = (
        f"UPDATE link_token SET revoked_at = {now}, revoke_reason = {why}"
        f" WHERE {ids} AND used_at IS NULL AND revoked_at IS NULL"
    )
    if keep:
        sql += f" AND NOT ({id_list(dialect, 'id', params(id_list_value(dialect, keep)))})"
    await conn.execute_query(sql, params.values)


async def issue_links(
    *,
    practice_id: int,
    patients: Sequence[tuple[int, str]],
    purpose: LinkPurpose,
    ttl: timedelta,
    created_by: int | None,
) -> list[IssuedLink]:
    """Issue one link per (patient id, address) in bulk statements; call inside a
    transaction. Older outstanding links of these patients are revoked."""
    if not patients:
        return []
    now = utcnow()
    expires_at = now + ttl
    patient_ids = [pid for pid, _ in patients]
    # Lock the charts (in id order, so overlapping batches cannot deadlock): a second
    # issue for the same patient (a double click) waits for this one to commit and then
    # revokes its link, instead of both revoking nothing and leaving two usable links.
    await lock_patients(patient_ids)
    tokens = {pid: new_token() for pid in patient_ids}
    digests = {pid: digest(tokens[pid]) for pid in patient_ids}
    inserted = await insert_rows(
        LinkToken._meta.db_table,
        LINK_COLUMNS,
        [
            (
                practice_id,
                pid,
                digests[pid],
                purpose.value,
                address,
                created_by,
                now,
                expires_at,
                DeliveryStatus.QUEUED.value,
                0,
                False,
            )
            for pid, address in patients
        ],
        returning="id, digest",
    )
    if inserted is not None:
        ids = {row["digest"]: row["id"] for row in inserted}
    else:  # SQLite: read the new ids back by their unique digests
        ids = {}
        wanted = list(digests.values())
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            for link_id, link_digest in await LinkToken.filter(digest__in=chunk).values_list(
                "id", "digest"
            ):
                ids[link_digest] = link_id
    new_ids = {pid: ids[digests[pid]] for pid in patient_ids}
    await set_column("patient", "last_link_id", "int", new_ids)
    # Revoked after the patients point at their new links: the trigger that copies a
    # link's state onto its patient (migration 0006) then has nothing to copy for these
    # older links, instead of rewriting 10,000 patient rows a second time.
    await revoke_links(patient_ids, RevokeReason.SUPERSEDED, keep=list(new_ids.values()))
    return [
        IssuedLink(
            patient_id=pid,
            link_id=ids[digests[pid]],
            token=tokens[pid],
            expires_at=expires_at,
            sent_to=address,
        )
        for pid, address in patients
    ]


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
    # > 0, not == 1: on SQLite Tortoise counts the rows the patient trigger changes too.
    return changed > 0
