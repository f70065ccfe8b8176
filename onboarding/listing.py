"""The Onboarding Tool's reads: one patient, a page of patients, counts per status.

A page is at most two statements whatever its size: the page itself (patient, account
and newest link joined, status computed in SQL) and, when asked for, the grouped counts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from core.clock import utcnow
from onboarding.sql import Params, as_date, as_datetime, connection, dialect_of, like_pattern
from onboarding.status import PortalStatus, status_sql


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class AccountRow:
    username: str
    must_change_password: bool
    last_login_at: datetime | None
    locked: bool


@dataclass(frozen=True)
class InvitationRow:
    sent_to: str
    sent_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    delivery_status: str
    purpose: str
    channel: str = "email"
    # The mail server's or the SMS provider's words on the last attempt.
    delivery_detail: str | None = None


@dataclass(frozen=True)
class PatientRow:
    id: int
    practice_id: int
    chart_number: str
    first_name: str
    last_name: str
    date_of_birth: date
    email: str | None
    zip_code: str | None
    chart_status: str
    portal_enabled: bool
    portal_status: PortalStatus
    email_shared_with: int
    account: AccountRow | None
    last_invitation: InvitationRow | None
    preferred_language: str = "en"
    mobile_phone: str | None = None
    sms_consent: bool = False


@dataclass(frozen=True)
class OnboardingFilter:
    statuses: Sequence[PortalStatus] | None = None
    search: str | None = None
    has_email: bool | None = None
    # Channels a link can go by now: "EMAIL", "SMS" (consented mobile) or "NONE".
    reachable_by: Sequence[str] | None = None


@dataclass
class Page:
    rows: list[PatientRow]
    has_next_page: bool


@dataclass
class _Query:
    params: Params
    where: list[str] = field(default_factory=list)
    indexed_search: bool = False


_SELECT = """SELECT p.id, p.practice_id, p.chart_number, p.first_name, p.last_name,
 p.date_of_birth, p.email, p.zip_code, p.chart_status,
 p.portal_enabled, p.preferred_language, p.mobile_phone, p.sms_consent,
 a.id AS a_id, a.username, a.must_change_password, a.last_login_at, a.locked_until,
 l.id AS l_id, l.sent_to, l.created_at AS l_created_at, l.expires_at AS l_expires_at,
 l.used_at AS l_used_at, l.revoked_at AS l_revoked_at, l.delivery_status, l.purpose,
 l.channel AS l_channel, l.delivery_detail,
 CASE WHEN p.email_key IS NULL THEN 0 ELSE (SELECT COUNT(*) FROM patient q
   WHERE q.practice_id = p.practice_id AND q.email_key = p.email_key AND q.id <> p.id)
 END AS shared,
 {status} AS status
FROM {source}
LEFT JOIN portal_account a ON a.patient_id = p.id
LEFT JOIN link_token l ON l.id = p.last_link_id"""

# A search term matches when it occurs in any of these. Joined by spaces they are the
# expression of the trigram index (migration 0007), character for character: a term
# never holds a space, so it cannot match across two columns, and the two forms agree.
SEARCH_COLUMNS = ("p.last_name_key", "p.first_name_key", "LOWER(p.chart_number)", "p.email_key")
SEARCH_TEXT = (
    "(p.last_name_key || ' ' || p.first_name_key || ' ' || lower(p.chart_number)"
    " || ' ' || coalesce(p.email_key, ''))"
)

# Counting and selecting ids need no join: the status reads patient columns only.
_FROM = "FROM patient p"


def encode_cursor(patient_id: int) -> str:
    # The cursor names the last row by id only: names are health-adjacent data and
    # cursors end up in front-end URLs and logs. The sort key is looked up in SQL.
    return base64.urlsafe_b64encode(f"patient:{patient_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise BadCursor("cursor is not one this service issued") from exc
    # Ids are 32-bit: a larger number would fail in the database driver (SPEC 6).
    if kind != "patient" or not number.isdigit() or len(number) > 12 or int(number) >= 2**31:
        raise BadCursor("cursor is not one this service issued")
    return int(number)


class PatientReader:
    """Reads patients of one practice; every statement is scoped to ``practice_id``."""

    def __init__(self, practice_id: int, temporary_password_ttl: timedelta) -> None:
        self.practice_id = practice_id
        self.temporary_password_ttl = temporary_password_ttl
        self.conn = connection()
        self.dialect = dialect_of(self.conn)
        self.now = utcnow()

    def _query(self) -> tuple[_Query, str]:
        q = _Query(Params(self.dialect))
        status = status_sql(q.params(self.now), q.params(self.now - self.temporary_password_ttl))
        q.where.append(f"p.practice_id = {q.params(self.practice_id)}")
        return q, status

    def _apply_filter(self, q: _Query, flt: OnboardingFilter | None) -> None:
        if flt is None:
            return
        if flt.has_email is True:
            q.where.append("p.email_key IS NOT NULL")
        elif flt.has_email is False:
            q.where.append("p.email_key IS NULL")
        if flt.reachable_by is not None:
            # The same columns as the status rule's NO_EMAIL branch (the status-inputs
            # index holds both), so this filter stays index-friendly.
            reach_sql = {
                "EMAIL": "p.email_key IS NOT NULL",
                "SMS": "p.sms_consent",
                "NONE": "(p.email_key IS NULL AND NOT p.sms_consent)",
            }
            terms = [reach_sql[r] for r in dict.fromkeys(flt.reachable_by)]
            q.where.append(f"({' OR '.join(terms)})" if terms else "1 = 0")
        for term in (flt.search or "").replace(",", " ").split():
            if "\x00" in term:
                # No stored field holds a NUL, and PostgreSQL refuses one as a parameter.
                q.where.append("1 = 0")
                continue
            pattern = q.params(like_pattern(term.casefold()))
            if self.dialect == "postgres" and len(term) >= 3:
                # The trigram index of migration 0007 answers this form.
                q.where.append(f"{SEARCH_TEXT} LIKE {pattern} ESCAPE '\\'")
                q.indexed_search = True
                continue
            matches = " OR ".join(f"{c} LIKE {pattern} ESCAPE '\\'" for c in SEARCH_COLUMNS)
            q.where.append(f"({matches})")

    def _status_clause(self, q: _Query, status: str, statuses: Sequence[PortalStatus]) -> None:
        placeholders = ", ".join(q.params(s.value) for s in statuses)
        q.where.append(f"({status}) IN ({placeholders})")

    async def by_ids(self, ids: Sequence[int]) -> dict[int, PatientRow]:
        if not ids:
            return {}
        q, status = self._query()
        placeholders = ", ".join(q.params(i) for i in ids)
        q.where.append(f"p.id IN ({placeholders})")
        sql = _SELECT.format(status=status, source="patient p") + " WHERE " + " AND ".join(q.where)
        rows = await self.conn.execute_query_dict(sql, q.params.values)
        return {r.id: r for r in map(self._row, rows)}

    async def ids(self, flt: OnboardingFilter | None, limit: int) -> list[int]:
        """Every id the filter selects, in list order, at most ``limit`` (bulk by filter)."""
        q, status = self._query()
        self._apply_filter(q, flt)
        if flt and flt.statuses is not None:
            if not flt.statuses:
                return []
            self._status_clause(q, status, flt.statuses)
        # The status column is unused here but binds the time parameters every query
        # declares (PostgreSQL refuses parameters it cannot type).
        sql = (
            f"SELECT p.id AS id, {status} AS status "
            + _FROM
            + " WHERE "
            + " AND ".join(q.where)
            + f" ORDER BY p.last_name_key, p.first_name_key, p.id LIMIT {q.params(limit)}"
        )
        return [int(r["id"]) for r in await self.conn.execute_query_dict(sql, q.params.values)]

    async def one(self, patient_id: int) -> PatientRow | None:
        return (await self.by_ids([patient_id])).get(patient_id)

    async def page(self, first: int, after: str | None, flt: OnboardingFilter | None) -> Page:
        q, status = self._query()
        self._apply_filter(q, flt)
        if flt and flt.statuses is not None:
            if not flt.statuses:
                return Page([], False)
            self._status_clause(q, status, flt.statuses)
        if after:
            after_id = q.params(decode_cursor(after))
            # Scoped to the practice: a cursor naming another practice's row matches nothing.
            q.where.append(
                "(p.last_name_key, p.first_name_key, p.id) > (SELECT c.last_name_key,"
                f" c.first_name_key, c.id FROM patient c WHERE c.id = {after_id}"
                f" AND c.practice_id = {q.params(self.practice_id)})"
            )
        limit = q.params(first + 1)
        where = " AND ".join(q.where)
        if q.indexed_search:
            # Matches come from the trigram index, then are sorted. Left alone, the planner
            # walks the name index and tests every patient until it has a page: 11-16 ms
            # instead of 3 ms for a term with 200 matches among 22,000 patients. OFFSET 0
            # makes the filtered set a subquery planned on its own.
            source = f"(SELECT * FROM patient p WHERE {where} OFFSET 0) p"
            sql = _SELECT.format(status=status, source=source)
        else:
            sql = _SELECT.format(status=status, source="patient p") + " WHERE " + where
        sql += f" ORDER BY p.last_name_key, p.first_name_key, p.id LIMIT {limit}"
        rows = [self._row(r) for r in await self.conn.execute_query_dict(sql, q.params.values)]
        return Page(rows[:first], len(rows) > first)

    async def status_counts(self, flt: OnboardingFilter | None) -> dict[PortalStatus, int]:
        """Counts per status for the filter without its status part, in one grouped query."""
        q, status = self._query()
        self._apply_filter(q, flt)
        sql = (
            f"SELECT s.status AS status, COUNT(*) AS n FROM (SELECT {status} AS status "
            + _FROM
            + " WHERE "
            + " AND ".join(q.where)
            + ") s GROUP BY s.status"
        )
        rows = await self.conn.execute_query_dict(sql, q.params.values)
        counts = {s: 0 for s in PortalStatus}
        for r in rows:
            counts[PortalStatus(r["status"])] = int(r["n"])
        return counts

    def _row(self, r: dict[str, Any]) -> PatientRow:
        account = None
        if r["a_id"] is not None:
            locked_until = as_datetime(r["locked_until"])
            account = AccountRow(
                username=r["username"],
                must_change_password=bool(r["must_change_password"]),
                last_login_at=as_datetime(r["last_login_at"]),
                locked=locked_until is not None and locked_until > self.now,
            )
        invitation = None
        if r["l_id"] is not None:
            invitation = InvitationRow(
                sent_to=r["sent_to"],
                sent_at=as_datetime(r["l_created_at"]),  # type: ignore[arg-type]
                expires_at=as_datetime(r["l_expires_at"]),  # type: ignore[arg-type]
                used_at=as_datetime(r["l_used_at"]),
                revoked_at=as_datetime(r["l_revoked_at"]),
                delivery_status=r["delivery_status"],
                purpose=r["purpose"],
                channel=r["l_channel"],
                delivery_detail=r["delivery_detail"],
            )
        return PatientRow(
            id=r["id"],
            practice_id=r["practice_id"],
            chart_number=r["chart_number"],
            first_name=r["first_name"],
            last_name=r["last_name"],
            date_of_birth=as_date(r["date_of_birth"]),
            email=r["email"],
            zip_code=r["zip_code"],
            chart_status=r["chart_status"],
            portal_enabled=bool(r["portal_enabled"]),
            portal_status=PortalStatus(r["status"]),
            email_shared_with=int(r["shared"]),
            account=account,
            last_invitation=invitation,
            preferred_language=r["preferred_language"],
            mobile_phone=r["mobile_phone"],
            sms_consent=bool(r["sms_consent"]),
        )
