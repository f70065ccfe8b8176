"""The Onboarding Tool's reads: one patient, a page of patients, counts per status.

A page is one statement whatever its size (issue 15): the page's rows chosen from
``patient`` (status computed in SQL), then joined to what the query selects (account,
newest link, shared-address count), with the counts per status in the same statement
when the query asks for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from tortoise.backends.base.client import BaseDBAsyncClient

from core.clock import utcnow
from core.enums import member_of
from core.objects import filled
from models.bulk import id_list, id_list_value
from onboarding.sql import Params, as_date, as_datetime, connection, dialect_of, like_pattern
from onboarding.status import (
    LINK_BUCKET_SECONDS,
    STAFF_BUCKET_SECONDS,
    PortalStatus,
    status_sql,
)

_portal_status = member_of(PortalStatus)

# The list order, and what a cursor carries: (last_name_key, first_name_key, id).
SortKey = tuple[str, str, int]


# The page's rows are plain dataclasses, not frozen ones, built by core.objects.filled:
# a frozen dataclass sets each field through object.__setattr__ (2.5 us instead of 0.6
# for a PatientRow), up to 150 rows a page (issue 15). Nothing mutates or hashes them.
@dataclass
class AccountRow:
    username: str
    must_change_password: bool
    last_login_at: datetime | None
    locked: bool


@dataclass
class InvitationRow:
    id: int
    patient_id: int
    sent_to: str
    sent_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    delivery_status: str
    purpose: str
    revoke_reason: str | None = None
    # The mail server's or the SMS provider's words on the last attempt (mail.dispatcher).
    delivery_detail: str | None = None
    is_reminder: bool = False
    channel: str = "email"


@dataclass
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
    last_name_key: str = ""
    first_name_key: str = ""

    @property
    def sort_key(self) -> SortKey:
        return (self.last_name_key, self.first_name_key, self.id)


@dataclass(frozen=True)
class OnboardingFilter:
    statuses: Sequence[PortalStatus] | None = None
    search: str | None = None
    has_email: bool | None = None
    # Channels a link can go by now: "EMAIL", "SMS" (consented mobile) or "NONE".
    reachable_by: Sequence[str] | None = None


@dataclass(frozen=True)
class PageWants:
    """What the query selects beyond the patient's own columns (graph lookahead): a page
    joins and counts only what is asked for (issue 15)."""

    account: bool = True
    invitation: bool = True
    shared: bool = True
    counts: bool = False


ALL = PageWants()


@dataclass
class Page:
    rows: list[PatientRow]
    # More rows beyond the page in the direction of paging.
    has_more: bool
    # Counts per status for the filter without its status part, when asked for.
    counts: dict[PortalStatus, int] | None = None


@dataclass
class _Query:
    params: Params
    where: list[str] = field(default_factory=list)
    indexed_search: bool = False
    searched: bool = False
    # Placeholders of the practice, of now and of now - temporary password lifetime.
    practice: str = ""
    now: str = ""
    cutoff: str = ""


_SELECT = """SELECT p.id, p.practice_id, p.chart_number, p.first_name, p.last_name,
 p.date_of_birth, p.email, p.zip_code, p.chart_status,
 p.portal_enabled, p.last_name_key, p.first_name_key,
 p.preferred_language, p.mobile_phone, p.sms_consent,
 a.id AS a_id, a.username, a.must_change_password, a.last_login_at, a.locked_until,
 l.id AS l_id, l.sent_to, l.created_at AS l_created_at, l.expires_at AS l_expires_at,
 l.used_at AS l_used_at, l.revoked_at AS l_revoked_at, l.delivery_status, l.purpose,
 l.revoke_reason, l.delivery_detail, l.is_reminder, l.channel AS l_channel,
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

# The page's own patient columns, chosen before any join (page_statement).
_PATIENT_COLUMNS = (
    "p.id, p.practice_id, p.chart_number, p.first_name, p.last_name, p.date_of_birth,"
    " p.email, p.zip_code, p.chart_status, p.portal_enabled, p.last_name_key,"
    " p.first_name_key, p.preferred_language, p.mobile_phone, p.sms_consent, p.email_key,"
    " p.last_link_id"
)
_ACCOUNT_COLUMNS = (
    "a.id AS a_id, a.username, a.must_change_password, a.last_login_at, a.locked_until"
)
_LINK_COLUMNS = (
    "l.id AS l_id, l.sent_to, l.created_at AS l_created_at, l.expires_at AS l_expires_at,"
    " l.used_at AS l_used_at, l.revoked_at AS l_revoked_at, l.delivery_status, l.purpose,"
    " l.revoke_reason, l.delivery_detail, l.is_reminder, l.channel AS l_channel"
)

# Counting and selecting ids need no join: the status reads patient columns only.
_FROM = "FROM patient p"


_ORDER = ("p.last_name_key", "p.first_name_key", "p.id")
_KEY = "(p.last_name_key, p.first_name_key, p.id)"

_INVITATION_SELECT = """SELECT l.id AS l_id, l.patient_id, l.sent_to, l.created_at AS l_created_at,
 l.expires_at AS l_expires_at, l.used_at AS l_used_at, l.revoked_at AS l_revoked_at,
 l.delivery_status, l.purpose, l.revoke_reason, l.delivery_detail, l.is_reminder,
 l.channel AS l_channel
FROM link_token l"""


class PatientReader:
    """Reads patients of one practice; every statement is scoped to ``practice_id``."""

    def __init__(
        self,
        practice_id: int,
        temporary_password_ttl: timedelta,
        *,
        dialect: str | None = None,
    ) -> None:
        self.practice_id = practice_id
        self.temporary_password_ttl = temporary_password_ttl
        # With ``dialect`` the reader only builds statements (bench/reference.py runs
        # the service's own SQL through a bare driver); without, it runs them.
        self.conn: BaseDBAsyncClient = connection() if dialect is None else None  # type: ignore[assignment]
        self.dialect = dialect or dialect_of(self.conn)
        self.now = utcnow()

    def _query(self) -> tuple[_Query, str]:
        q = _Query(Params(self.dialect))
        q.now = q.params(self.now)
        q.cutoff = q.params(self.now - self.temporary_password_ttl)
        status = status_sql(q.now, q.cutoff)
        q.practice = q.params(self.practice_id)
        q.where.append(f"p.practice_id = {q.practice}")
        return q, status

    @staticmethod
    def _practice_wide(flt: OnboardingFilter | None) -> bool:
        """Whether the filter without its status part selects the whole practice: then
        its counts per status are the kept ones (``_kept_counts``)."""
        return flt is None or (
            not (flt.search or "").replace(",", " ").split()
            and flt.has_email is None
            and flt.reachable_by is None
        )

    def _kept_counts(self, q: _Query) -> tuple[str, str]:
        """The counts per status of the whole practice without scanning it (migration
        0018): a CTE ``mv`` and a source of (status, n) rows to sum per status.

        ``patient_status_count`` holds the count of each status class, kept by triggers.
        A patient's status differs from its class only while it is CREDENTIALS_ISSUED
        (class NO_EMAIL, INVITATION_EXPIRED or NOT_INVITED, staff-set password set after
        ``cutoff`` = now - lifetime) or INVITED (class INVITATION_EXPIRED or NOT_INVITED,
        link open after now, and not CREDENTIALS_ISSUED). ``mv`` holds how many move
        from each class to each of those two, as (class, status, n):

        - CREDENTIALS_ISSUED: the kept "S" buckets wholly after the bucket of ``cutoff``,
          plus the patients of that one bucket set after ``cutoff`` (a range scan of at
          most an hour of staff-set passwords);
        - INVITED: the kept "L" buckets wholly after the bucket of now, plus the patients
          of that one bucket whose link is still open (ten minutes of links), minus the
          patients with an open link and a staff-set password inside its lifetime (they
          are CREDENTIALS_ISSUED; found among open links beside a staff-set password).

        Each then counts -n in its class and +n in its status. Every part is read in
        one statement, so from one snapshot: exact at any instant, no sweeper, and the
        cost does not grow with the practice (buckets: at most lifetime/1 h and link
        lifetime/10 min per class; scans: one bucket's patients)."""
        cutoff_at = self.now - self.temporary_password_ttl
        staff_bucket = int(cutoff_at.timestamp()) // STAFF_BUCKET_SECONDS
        link_bucket = int(self.now.timestamp()) // LINK_BUCKET_SECONDS
        staff_end = q.params(datetime.fromtimestamp((staff_bucket + 1) * STAFF_BUCKET_SECONDS, UTC))
        link_end = q.params(datetime.fromtimestamp((link_bucket + 1) * LINK_BUCKET_SECONDS, UTC))
        pid = q.practice
        ci, inv = "'CREDENTIALS_ISSUED'", "'INVITED'"
        ci_classes = "('NO_EMAIL', 'INVITATION_EXPIRED', 'NOT_INVITED')"
        inv_classes = "('INVITATION_EXPIRED', 'NOT_INVITED')"
        moved = (
            "mv AS ("
            f"SELECT e.status_class, {ci} AS status, e.n FROM patient_status_expiry e"
            f" WHERE e.practice_id = {pid} AND e.kind = 'S' AND e.bucket > {q.params(staff_bucket)}"
            f" UNION ALL SELECT p.status_class, {ci}, 1 FROM patient p"
            f" WHERE p.practice_id = {pid} AND p.staff_password_set_at > {q.cutoff}"
            f" AND p.staff_password_set_at < {staff_end} AND p.status_class IN {ci_classes}"
            f" UNION ALL SELECT e.status_class, {inv}, e.n FROM patient_status_expiry e"
            f" WHERE e.practice_id = {pid} AND e.kind = 'L' AND e.bucket > {q.params(link_bucket)}"
            f" UNION ALL SELECT p.status_class, {inv}, 1 FROM patient p"
            f" WHERE p.practice_id = {pid} AND p.link_open_until > {q.now}"
            f" AND p.link_open_until < {link_end} AND p.status_class IN {inv_classes}"
            f" UNION ALL SELECT p.status_class, {inv}, -1 FROM patient p"
            f" WHERE p.practice_id = {pid} AND p.link_open_until > {q.now}"
            f" AND p.staff_password_set_at > {q.cutoff} AND p.status_class IN {inv_classes})"
        )
        source = (
            "(SELECT k.status_class AS status, k.n AS n FROM patient_status_count k"
            f" WHERE k.practice_id = {pid}"
            " UNION ALL SELECT mv.status_class, -mv.n FROM mv"
            " UNION ALL SELECT mv.status, mv.n FROM mv)"
        )
        return moved, source

    @staticmethod
    def _status_match(q: _Query, statuses: Sequence[PortalStatus]) -> str:
        """ "Status in ``statuses``", exactly, as conditions on the status class and the
        two time-dependent columns instead of the status CASE: the planner estimates
        them from column statistics (a CASE compared to a list gets a fixed guess of a
        few rows, and for INVITED or INVITATION_EXPIRED among 22,000 patients it chose
        to read the whole practice and sort, 18 ms, rather than walk the name order),
        and indexes answer them (the class index, the two range indexes), so a rare
        status reads its own patients, not the practice. Each branch is the rule of
        onboarding/status.py for one status, given that the class is the rule without
        its two time-dependent branches (migration 0018)."""
        fresh = f"p.staff_password_set_at > {q.cutoff}"
        not_fresh = f"(p.staff_password_set_at IS NULL OR p.staff_password_set_at <= {q.cutoff})"
        not_open = f"(p.link_open_until IS NULL OR p.link_open_until <= {q.now})"
        invitable = "p.status_class IN ('INVITATION_EXPIRED', 'NOT_INVITED')"
        rule = {
            PortalStatus.DISABLED: "p.status_class = 'DISABLED'",
            PortalStatus.ACTIVE: "p.status_class = 'ACTIVE'",
            PortalStatus.CREDENTIALS_ISSUED: (
                f"(p.status_class IN ('NO_EMAIL', 'INVITATION_EXPIRED', 'NOT_INVITED') AND {fresh})"
            ),
            PortalStatus.NO_EMAIL: f"(p.status_class = 'NO_EMAIL' AND {not_fresh})",
            PortalStatus.INVITED: (
                f"({invitable} AND {not_fresh} AND p.link_open_until > {q.now})"
            ),
            PortalStatus.INVITATION_EXPIRED: (
                f"(p.status_class = 'INVITATION_EXPIRED' AND {not_fresh} AND {not_open})"
            ),
            PortalStatus.NOT_INVITED: (
                f"(p.status_class = 'NOT_INVITED' AND {not_fresh} AND {not_open})"
            ),
        }
        return f"({' OR '.join(rule[s] for s in dict.fromkeys(statuses))})"

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
            q.searched = True
            pattern = q.params(like_pattern(term.casefold()))
            if self.dialect == "postgres" and len(term) >= 3:
                # The trigram index of migration 0007 answers this form.
                q.where.append(f"{SEARCH_TEXT} LIKE {pattern} ESCAPE '\\'")
                q.indexed_search = True
                continue
            matches = " OR ".join(f"{c} LIKE {pattern} ESCAPE '\\'" for c in SEARCH_COLUMNS)
            q.where.append(f"({matches})")

    def _status_clause(self, q: _Query, status: str, statuses: Sequence[PortalStatus]) -> None:
        q.where.append(self._status_match(q, statuses))

    async def by_ids(self, ids: Sequence[int]) -> dict[int, PatientRow]:
        if not ids:
            return {}
        q, status = self._query()
        placeholders = ", ".join(q.params(i) for i in ids)
        q.where.append(f"p.id IN ({placeholders})")
        sql = _SELECT.format(status=status, source="patient p") + " WHERE " + " AND ".join(q.where)
        _, records = await self.conn.execute_query(sql, q.params.values)
        rows = (self._row(r, True, True, True) for r in records)
        return {r.id: r for r in rows}

    async def ids(
        self, flt: OnboardingFilter | None, limit: int, *, within: Sequence[int] | None = None
    ) -> list[int]:
        """Every id the filter selects, in list order, at most ``limit`` (bulk by filter);
        ``within``: only among these."""
        q, status = self._filtered(flt)
        if within is not None:
            # One parameter, however many ids (a bulk action has up to 10,000).
            mark = q.params(id_list_value(self.dialect, within))
            q.where.append(id_list(self.dialect, "p.id", mark))
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

    def _filtered(self, flt: OnboardingFilter | None) -> tuple[_Query, str]:
        q, status = self._query()
        self._apply_filter(q, flt)
        # An empty status list means any status, like an absent one.
        if flt and flt.statuses:
            self._status_clause(q, status, flt.statuses)
        return q, status

    def _beyond(self, q: _Query, key: SortKey, op: str) -> None:
        # The cursor carries the whole sort key, so the next page starts where the last
        # one ended whatever happened since to the row it came from (SPEC 8.3).
        last, first, pid = (q.params(v) for v in key)
        q.where.append(f"{_KEY} {op} ({last}, {first}, {pid})")

    async def page(
        self,
        size: int,
        boundary: SortKey | None,
        flt: OnboardingFilter | None,
        *,
        backward: bool = False,
        wants: PageWants = ALL,
    ) -> Page:
        """``size`` rows after ``boundary`` (or, ``backward``, the ``size`` rows before
        it), in list order either way; with ``wants.counts`` also the counts per status
        of the filter without its status part, from the same statement."""
        sql, values = self.page_statement(size, boundary, flt, backward=backward, wants=wants)
        # The driver's own records (asyncpg's Record, sqlite3.Row), read by column
        # name: execute_query_dict would copy every record into a dict first (issue 15).
        _, records = await self.conn.execute_query(sql, values)
        counts = None
        if wants.counts:
            counts = self._counts_of(records[0]["cs"], records[0]["cn"])
            if records[0]["id"] is None:  # an empty page: one row carrying the counts
                records = []
        row = self._row
        account, invitation, shared = wants.account, wants.invitation, wants.shared
        rows = [row(r, account, invitation, shared) for r in records]
        page = rows[:size]
        if backward:
            page.reverse()
        return Page(page, len(rows) > size, counts)

    def page_statement(
        self,
        size: int,
        boundary: SortKey | None,
        flt: OnboardingFilter | None,
        *,
        backward: bool = False,
        wants: PageWants = ALL,
    ) -> tuple[str, list[Any]]:
        """One statement for a page (issue 15). The page's rows are chosen from
        ``patient`` alone (filter, keyset, LIMIT); only those rows are then joined to
        their account and newest link and get their shared-address count, and only when
        the query selects those fields. With ``wants.counts`` the counts per status come
        back on every row (arrays ``cs``/``cn``; one all-NULL row when the page is empty),
        and a search is matched once for both."""
        q, status = self._query()
        self._apply_filter(q, flt)
        matched = " AND ".join(q.where)
        narrow: list[str] = []
        chosen = matched
        if flt and flt.statuses:
            if q.searched and wants.counts:  # the matches, kept in m, then narrowed
                placeholders = ", ".join(q.params(s.value) for s in flt.statuses)
                narrow.append(f"x.status IN ({placeholders})")
            else:
                chosen += " AND " + self._status_match(q, flt.statuses)
        kept = wants.counts and self._practice_wide(flt)
        if boundary is not None:
            last, first, pid = (q.params(v) for v in boundary)
            op = "<" if backward else ">"
            narrow.append(
                f"(x.last_name_key, x.first_name_key, x.id) {op} ({last}, {first}, {pid})"
            )
        # Written into the statement, not a parameter: asyncpg prepares statements and,
        # after five runs, PostgreSQL may keep a generic plan; not knowing the LIMIT it
        # guessed thousands of rows and hash-joined every account of the database
        # (110 ms instead of 3 for the 250,000-patient practice with counts).
        limit = str(int(size) + 1)
        direction = " DESC" if backward else ""
        ctes = []
        patients = f"SELECT {_PATIENT_COLUMNS}, {status} AS status FROM patient p WHERE {{}}"
        if q.searched and wants.counts:
            # The matches, once, for the page and the counts (the trigram index on
            # PostgreSQL, a scan of the practice on SQLite).
            ctes.append(f"m AS MATERIALIZED ({patients.format(matched)})")
            page_source, count_source = "m", "(SELECT status FROM m)"
        else:
            # Left alone with a search, the planner walks the name index and tests every
            # patient until it has a page: 11-16 ms instead of 3 ms for a term with 200
            # matches among 22,000 patients. OFFSET 0 plans the matches on their own.
            page_source = f"({patients.format(chosen)}{' OFFSET 0' if q.indexed_search else ''})"
            count_source = f"(SELECT {status} AS status FROM patient p WHERE {matched})"
            if kept:
                moved, count_source = self._kept_counts(q)
                ctes.append(moved)
        order = ", ".join(f"{c}{direction}" for c in ("last_name_key", "first_name_key", "id"))
        ctes.append(
            f"pg AS (SELECT * FROM {page_source} x"
            + (f" WHERE {' AND '.join(narrow)}" if narrow else "")
            + f" ORDER BY {order} LIMIT {limit})"
        )
        columns = ["pg.*"]
        joins = ""
        if wants.account:
            columns.append(_ACCOUNT_COLUMNS)
            joins += " LEFT JOIN portal_account a ON a.patient_id = pg.id"
        if wants.invitation:
            columns.append(_LINK_COLUMNS)
            joins += " LEFT JOIN link_token l ON l.id = pg.last_link_id"
        if wants.shared:
            columns.append(
                "CASE WHEN pg.email_key IS NULL THEN 0 ELSE (SELECT COUNT(*) FROM patient q"
                " WHERE q.practice_id = pg.practice_id AND q.email_key = pg.email_key"
                " AND q.id <> pg.id) END AS shared"
            )
        outer_order = ", ".join(
            f"pg.{c}{direction}" for c in ("last_name_key", "first_name_key", "id")
        )
        if wants.counts:
            agg = (
                "json_group_array(status) AS cs, json_group_array(n) AS cn"
                if self.dialect == "sqlite"
                else "array_agg(status) AS cs, array_agg(n) AS cn"
            )
            ctes.append(
                f"c AS (SELECT {agg} FROM (SELECT status, {'SUM(n)' if kept else 'COUNT(*)'} AS n"
                f" FROM {count_source} y GROUP BY status) z)"
            )
            sql = (
                f"WITH {', '.join(ctes)} SELECT c.cs, c.cn, {', '.join(columns)} FROM c"
                f" LEFT JOIN pg ON 1 = 1{joins} ORDER BY {outer_order}"
            )
        else:
            sql = (
                f"WITH {', '.join(ctes)} SELECT {', '.join(columns)} FROM pg{joins}"
                f" ORDER BY {outer_order}"
            )
        return sql, q.params.values

    @staticmethod
    def _counts_of(statuses: Any, numbers: Any) -> dict[PortalStatus, int]:
        if isinstance(statuses, str):  # SQLite's json_group_array
            statuses, numbers = orjson.loads(statuses), orjson.loads(numbers)
        counts = {s: 0 for s in PortalStatus}
        for status, n in zip(statuses or [], numbers or [], strict=True):
            counts[PortalStatus(status)] = int(n)
        return counts

    async def any_beyond(
        self, boundary: SortKey, flt: OnboardingFilter | None, *, before: bool
    ) -> bool:
        """Whether rows lie at or before ``boundary`` (``before``) or at or after it: the
        other side of a page, for PageInfo's hasPreviousPage/hasNextPage."""
        q, status = self._filtered(flt)
        self._beyond(q, boundary, "<=" if before else ">=")
        # The status column binds the time parameters every query declares.
        sql = f"SELECT p.id, {status} AS status {_FROM} WHERE {' AND '.join(q.where)} LIMIT 1"
        return bool(await self.conn.execute_query_dict(sql, q.params.values))

    async def invitations(
        self, patient_id: int, size: int, boundary: int | None, *, backward: bool = False
    ) -> tuple[list[InvitationRow], bool]:
        """A patient's links, newest first (``boundary``: a link id the page starts
        after, or with ``backward`` ends before). Scoped to the practice."""
        params = Params(self.dialect)
        where = [
            f"l.patient_id = {params(patient_id)}",
            f"l.practice_id = {params(self.practice_id)}",
        ]
        if boundary is not None:
            where.append(f"l.id {'>' if backward else '<'} {params(boundary)}")
        order = "ASC" if backward else "DESC"
        sql = (
            f"{_INVITATION_SELECT} WHERE {' AND '.join(where)}"
            f" ORDER BY l.id {order} LIMIT {params(size + 1)}"
        )
        rows = [self._invitation(r) for r in await self.conn.execute_query_dict(sql, params.values)]
        page = rows[:size]
        if backward:
            page.reverse()
        return page, len(rows) > size

    async def invitations_by_ids(self, ids: Sequence[int]) -> dict[int, InvitationRow]:
        if not ids:
            return {}
        params = Params(self.dialect)
        placeholders = ", ".join(params(i) for i in ids)
        sql = (
            f"{_INVITATION_SELECT} WHERE l.id IN ({placeholders})"
            f" AND l.practice_id = {params(self.practice_id)}"
        )
        rows = await self.conn.execute_query_dict(sql, params.values)
        return {row.id: row for row in map(self._invitation, rows)}

    async def any_invitation_beyond(self, patient_id: int, link_id: int, *, newer: bool) -> bool:
        params = Params(self.dialect)
        sql = (
            f"SELECT l.id FROM link_token l WHERE l.patient_id = {params(patient_id)}"
            f" AND l.practice_id = {params(self.practice_id)}"
            f" AND l.id {'>=' if newer else '<='} {params(link_id)} LIMIT 1"
        )
        return bool(await self.conn.execute_query_dict(sql, params.values))

    async def status_counts(self, flt: OnboardingFilter | None) -> dict[PortalStatus, int]:
        """Counts per status for the filter without its status part, in one grouped query."""
        sql, values = self.counts_statement(flt)
        rows = await self.conn.execute_query_dict(sql, values)
        counts = {s: 0 for s in PortalStatus}
        for r in rows:
            counts[PortalStatus(r["status"])] = int(r["n"])
        return counts

    def counts_statement(self, flt: OnboardingFilter | None) -> tuple[str, list[Any]]:
        q, status = self._query()
        if self._practice_wide(flt):
            moved, source = self._kept_counts(q)
            sql = (
                f"WITH {moved} SELECT s.status AS status, SUM(s.n) AS n FROM {source} s"
                " GROUP BY s.status"
            )
            return sql, q.params.values
        self._apply_filter(q, flt)
        sql = (
            f"SELECT s.status AS status, COUNT(*) AS n FROM (SELECT {status} AS status "
            + _FROM
            + " WHERE "
            + " AND ".join(q.where)
            + ") s GROUP BY s.status"
        )
        return sql, q.params.values

    def _row(self, r: Any, account: bool, invitation: bool, shared: bool) -> PatientRow:
        """``r``: a record with the columns the page selected (``account``, ``invitation``
        and ``shared`` say which joins it has)."""
        account_row = None
        if account and r["a_id"] is not None:
            locked_until = as_datetime(r["locked_until"])
            account_row = filled(
                AccountRow,
                {
                    "username": r["username"],
                    "must_change_password": bool(r["must_change_password"]),
                    "last_login_at": as_datetime(r["last_login_at"]),
                    "locked": locked_until is not None and locked_until > self.now,
                },
            )
        invitation_row = None
        if invitation and r["l_id"] is not None:
            invitation_row = self._invitation(r, r["id"])
        return filled(
            PatientRow,
            {
                "id": r["id"],
                "practice_id": r["practice_id"],
                "chart_number": r["chart_number"],
                "first_name": r["first_name"],
                "last_name": r["last_name"],
                "date_of_birth": as_date(r["date_of_birth"]),
                "email": r["email"],
                "zip_code": r["zip_code"],
                "chart_status": r["chart_status"],
                "portal_enabled": bool(r["portal_enabled"]),
                "portal_status": _portal_status(r["status"]),
                "email_shared_with": int(r["shared"] or 0) if shared else 0,
                "account": account_row,
                "last_invitation": invitation_row,
                "preferred_language": r["preferred_language"],
                "mobile_phone": r["mobile_phone"],
                "sms_consent": bool(r["sms_consent"]),
                "last_name_key": r["last_name_key"],
                "first_name_key": r["first_name_key"],
            },
        )

    @staticmethod
    def _invitation(r: Any, patient_id: int | None = None) -> InvitationRow:
        return filled(
            InvitationRow,
            {
                "id": r["l_id"],
                "patient_id": r["patient_id"] if patient_id is None else patient_id,
                "sent_to": r["sent_to"],
                "sent_at": as_datetime(r["l_created_at"]),
                "expires_at": as_datetime(r["l_expires_at"]),
                "used_at": as_datetime(r["l_used_at"]),
                "revoked_at": as_datetime(r["l_revoked_at"]),
                "delivery_status": r["delivery_status"],
                "purpose": r["purpose"],
                "revoke_reason": r["revoke_reason"],
                "delivery_detail": r["delivery_detail"],
                "is_reminder": bool(r["is_reminder"]),
                "channel": r["l_channel"],
            },
        )
