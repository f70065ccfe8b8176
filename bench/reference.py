"""Two references for the Onboarding Tool's page, each a bare Starlette route with raw
asyncpg (or sqlite3) and orjson: what the service's page would cost without GraphQL,
Strawberry, Tortoise or middleware.

- ``POST /graphql`` (the *honest* reference, issue 15): the fastest correct page written
  by hand, with its own SQL and only the indexes the service also has. One statement per
  page after the staff token lookup: the rows of the page are chosen from ``patient``
  alone (keyset, LIMIT), and only those rows are joined to their account and newest link
  and get their shared-address count; the counts per status come back in the same
  statement; a search term is matched once (a materialised CTE) and feeds both the page
  and the counts.
- ``POST /same-sql/graphql``: the service's own statements, taken from
  ``onboarding.listing.PatientReader`` (its statement builders, not a copy, so this column
  always runs what the service runs), through the same bare driver and renderer. The gap
  between the two references is what the service's SQL costs; the gap between the
  same-SQL reference and the service is what its Python costs.

Both answer the exact bytes the GraphQL endpoint answers for ``bench.workload``'s
queries (global ids, sealed cursors, orjson); ``bench.pages`` checks byte equality
before it measures. They understand one query shape: the Onboarding list with every
Patient field the workload selects, with or without ``totalCount``/``statusCounts``.

Run: ``BENCH_REF_DATABASE_URL=... BENCH_REF_SECRET_KEY=... uvicorn bench.reference:app``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.sealing import BadSeal, Sealer

STATUSES = (
    "DISABLED",
    "NO_EMAIL",
    "NOT_INVITED",
    "INVITED",
    "INVITATION_EXPIRED",
    "CREDENTIALS_ISSUED",
    "ACTIVE",
)
REACH = {
    "EMAIL": "p.email_key IS NOT NULL",
    "SMS": "p.sms_consent",
    "NONE": "(p.email_key IS NULL AND NOT p.sms_consent)",
}
TEMP_TTL = dt.timedelta(days=int(os.environ.get("BENCH_REF_TEMP_TTL_DAYS", "7")))
STAFF_TTL = dt.timedelta(days=int(os.environ.get("BENCH_REF_STAFF_TTL_DAYS", "90")))
MAX_PAGE = 200

# The same text Tortoise stores and binds on SQLite.
sqlite3.register_adapter(dt.datetime, lambda v: v.isoformat(" "))
sqlite3.register_adapter(dt.date, lambda v: v.isoformat())


class BadRequest(Exception):
    pass


# --- the honest reference's SQL -----------------------------------------------------------


class Params:
    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"?{len(self.values)}" if self.sqlite else f"${len(self.values)}"


def status_case(now: str, cutoff: str) -> str:
    # NO_EMAIL: no address and no consented mobile (issue 14).
    return (
        "CASE WHEN NOT p.portal_enabled THEN 'DISABLED' WHEN p.account_active THEN 'ACTIVE'"
        f" WHEN p.staff_password_set_at > {cutoff} THEN 'CREDENTIALS_ISSUED'"
        " WHEN p.email_key IS NULL AND NOT p.sms_consent THEN 'NO_EMAIL'"
        f" WHEN p.link_open_until > {now} THEN 'INVITED'"
        " WHEN p.last_link_id IS NOT NULL THEN 'INVITATION_EXPIRED' ELSE 'NOT_INVITED' END"
    )


def like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


TRGM_TEXT = (
    "(p.last_name_key || ' ' || p.first_name_key || ' ' || lower(p.chart_number)"
    " || ' ' || coalesce(p.email_key, ''))"
)
PAGE_COLUMNS = (
    "p.id, p.chart_number, p.first_name, p.last_name, p.date_of_birth, p.email, p.zip_code,"
    " p.chart_status, p.portal_enabled, p.last_name_key, p.first_name_key, p.email_key,"
    " p.last_link_id"
)


def honest_statement(
    sqlite: bool,
    practice_id: int,
    first: int,
    key: tuple[str, str, int] | None,
    flt: dict[str, Any],
    counts: bool,
) -> tuple[str, list[Any]]:
    """One statement: the page's rows (joined after LIMIT) and, with ``counts``, the
    counts per status of the filter without its status part on every row (and on a
    single all-NULL row when the page is empty)."""
    now = dt.datetime.now(dt.UTC)
    prm = Params(sqlite)
    status = status_case(prm(now), prm(now - TEMP_TTL))
    practice = prm(practice_id)
    where = [f"p.practice_id = {practice}"]
    if flt.get("hasEmail") is True:
        where.append("p.email_key IS NOT NULL")
    elif flt.get("hasEmail") is False:
        where.append("p.email_key IS NULL")
    if flt.get("reachableBy") is not None:
        terms = [REACH[r] for r in dict.fromkeys(flt["reachableBy"])]
        where.append("(" + " OR ".join(terms) + ")" if terms else "1 = 0")
    search = False
    for term in (flt.get("search") or "").replace(",", " ").split():
        search = True
        pattern = prm(like(term.casefold()))
        if not sqlite and len(term) >= 3:
            where.append(f"{TRGM_TEXT} LIKE {pattern} ESCAPE '\\'")
        else:
            cols = ("p.last_name_key", "p.first_name_key", "lower(p.chart_number)", "p.email_key")
            where.append("(" + " OR ".join(f"{c} LIKE {pattern} ESCAPE '\\'" for c in cols) + ")")
    narrow = []
    statuses = flt.get("status") or None
    if statuses:
        narrow.append(f"status IN ({', '.join(prm(s) for s in statuses)})")
    if key is not None:
        narrow.append(
            f"(last_name_key, first_name_key, id) > ({prm(key[0])}, {prm(key[1])}, {prm(key[2])})"
        )
    limit = prm(first + 1)
    order = "last_name_key, first_name_key, id"
    ctes = []
    if search:
        # Matched once: the page and the counts read the same few rows.
        ctes.append(
            f"m AS MATERIALIZED (SELECT {PAGE_COLUMNS}, {status} AS status FROM patient p"
            f" WHERE {' AND '.join(where)})"
        )
        page_source = "m"
        count_source = "m"
    else:
        page_source = (
            f"(SELECT {PAGE_COLUMNS}, {status} AS status FROM patient p"
            f" WHERE {' AND '.join(where)})"
        )
        count_source = f"(SELECT {status} AS status FROM patient p WHERE {' AND '.join(where)})"
    ctes.append(
        f"pg AS (SELECT * FROM {page_source} x"
        + (f" WHERE {' AND '.join(narrow)}" if narrow else "")
        + f" ORDER BY {order} LIMIT {limit})"
    )
    select_page = (
        "pg.id, pg.chart_number, pg.first_name, pg.last_name, pg.date_of_birth, pg.email,"
        " pg.zip_code, pg.chart_status, pg.portal_enabled, pg.last_name_key,"
        " pg.first_name_key, pg.status,"
        " a.id AS a_id, a.username, a.must_change_password, a.last_login_at, a.locked_until,"
        " l.id AS l_id, l.sent_to, l.created_at AS l_created_at, l.expires_at AS l_expires_at,"
        " l.used_at AS l_used_at, l.delivery_status,"
        " CASE WHEN pg.email_key IS NULL THEN 0 ELSE (SELECT COUNT(*) FROM patient q"
        f" WHERE q.practice_id = {practice} AND q.email_key = pg.email_key AND q.id <> pg.id)"
        " END AS shared"
    )
    joins = (
        " LEFT JOIN portal_account a ON a.patient_id = pg.id"
        " LEFT JOIN link_token l ON l.id = pg.last_link_id"
    )
    if counts:
        agg = (
            "json_group_array(status) AS cs, json_group_array(n) AS cn"
            if sqlite
            else "array_agg(status) AS cs, array_agg(n) AS cn"
        )
        ctes.append(
            f"c AS (SELECT {agg} FROM (SELECT status, COUNT(*) AS n FROM {count_source} y"
            " GROUP BY status) z)"
        )
        sql = (
            f"WITH {', '.join(ctes)} SELECT c.cs, c.cn, {select_page} FROM c"
            f" LEFT JOIN pg ON 1 = 1{joins} ORDER BY pg.last_name_key, pg.first_name_key, pg.id"
        )
    else:
        sql = (
            f"WITH {', '.join(ctes)} SELECT {select_page} FROM pg{joins}"
            " ORDER BY pg.last_name_key, pg.first_name_key, pg.id"
        )
    return sql, prm.values


# --- shared: request, auth, rendering --------------------------------------------------------


def _dt(value: Any) -> Any:
    # asyncpg hands back datetimes (orjson writes them); sqlite3 the stored ISO text.
    if value is None or not isinstance(value, str):
        return value
    return dt.datetime.fromisoformat(value)


def _date(value: Any) -> Any:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def global_id(pk: int) -> str:
    return base64.b64encode(f"Patient:{pk}".encode()).decode("ascii")


def render(
    rows: list[Any],
    first: int,
    counts: dict[str, int] | None,
    statuses: list[str] | None,
    sealer: Sealer,
    practice_id: int,
) -> bytes:
    now = dt.datetime.now(dt.UTC)
    context = f"onboarding|{practice_id}"
    edges = []
    for r in rows[:first]:
        account = None
        if r["a_id"] is not None:
            locked_until = _dt(r["locked_until"])
            account = {
                "username": r["username"],
                "mustChangePassword": bool(r["must_change_password"]),
                "lastLoginAt": _dt(r["last_login_at"]),
                "locked": locked_until is not None and locked_until > now,
            }
        invitation = None
        if r["l_id"] is not None:
            invitation = {
                "sentTo": r["sent_to"],
                "sentAt": _dt(r["l_created_at"]),
                "expiresAt": _dt(r["l_expires_at"]),
                "usedAt": _dt(r["l_used_at"]),
                "deliveryStatus": r["delivery_status"],
            }
        edges.append(
            {
                "cursor": sealer.seal(context, [r["last_name_key"], r["first_name_key"], r["id"]]),
                "node": {
                    "id": global_id(r["id"]),
                    "chartNumber": r["chart_number"],
                    "firstName": r["first_name"],
                    "lastName": r["last_name"],
                    "dateOfBirth": _date(r["date_of_birth"]),
                    "email": r["email"],
                    "zipCode": r["zip_code"],
                    "chartStatus": r["chart_status"],
                    "portalEnabled": bool(r["portal_enabled"]),
                    "portalStatus": r["status"],
                    "emailSharedWith": int(r["shared"]),
                    "account": account,
                    "lastInvitation": invitation,
                },
            }
        )
    onboarding: dict[str, Any] = {
        "edges": edges,
        "pageInfo": {
            "endCursor": edges[-1]["cursor"] if edges else None,
            "hasNextPage": len(rows) > first,
        },
    }
    if counts is not None:
        wanted = set(statuses) if statuses else None
        onboarding["totalCount"] = sum(
            n for s, n in counts.items() if wanted is None or s in wanted
        )
        onboarding["statusCounts"] = [{"status": s, "count": counts.get(s, 0)} for s in STATUSES]
    return orjson.dumps({"data": {"onboarding": onboarding}})


def parse(body: bytes) -> tuple[int, str | None, dict[str, Any], bool]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("bad JSON") from exc
    variables = request.get("variables") or {}
    first = variables.get("first") or 50
    if not 1 <= first <= MAX_PAGE:
        raise BadRequest("bad first")
    # The workload's two query shapes differ by the counts.
    counts = "totalCount" in (request.get("query") or "")
    return first, variables.get("after"), variables.get("filter") or {}, counts


def error(message: str, status: int = 200) -> Response:
    return Response(
        orjson.dumps({"data": None, "errors": [{"message": message}]}),
        status_code=status,
        media_type="application/json",
    )


def token_digest(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return hashlib.sha256(token.encode()).hexdigest()


STAFF_SQL = (
    "SELECT practice_id FROM staff_user WHERE token_digest = {d} AND active"
    " AND revoked_at IS NULL AND coalesce(token_issued_at, created_at) > {t}"
)

DATABASE_URL = os.environ.get("BENCH_REF_DATABASE_URL", "")
IS_SQLITE = DATABASE_URL.startswith("sqlite")
SEALER = Sealer(os.environ.get("BENCH_REF_SECRET_KEY", "x" * 32), "cursor")
state: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    if IS_SQLITE:
        conn = sqlite3.connect(DATABASE_URL[len("sqlite://") :], check_same_thread=False)
        conn.row_factory = sqlite3.Row
        state["sqlite"] = conn
        yield
        conn.close()
    else:
        import asyncpg

        url = DATABASE_URL.replace("postgres://", "postgresql://", 1)
        # The service's pool (Tortoise's asyncpg default) is 1..5 connections.
        state["pool"] = await asyncpg.create_pool(url, min_size=1, max_size=5)
        yield
        await state["pool"].close()


def open_cursor(after: str | None, practice_id: int) -> tuple[str, str, int] | None:
    if not after:
        return None
    try:
        last, first, pid = SEALER.open(f"onboarding|{practice_id}", after)
    except (BadSeal, ValueError, TypeError) as exc:
        raise BadRequest("cursor is not one this service issued for this list") from exc
    return str(last), str(first), int(pid)


async def honest(request: Request) -> Response:
    digest = token_digest(request)
    if digest is None:
        return error("authentication required")
    try:
        first, after, flt, want_counts = parse(await request.body())
    except BadRequest as exc:
        return error(str(exc))
    staff_cutoff = dt.datetime.now(dt.UTC) - STAFF_TTL
    if IS_SQLITE:
        conn: sqlite3.Connection = state["sqlite"]
        row = conn.execute(STAFF_SQL.format(d="?1", t="?2"), (digest, staff_cutoff)).fetchone()
        if row is None:
            return error("authentication required")
        practice_id = row[0]
        try:
            sql, values = honest_statement(
                True, practice_id, first, open_cursor(after, practice_id), flt, want_counts
            )
        except BadRequest as exc:
            return error(str(exc))
        rows = conn.execute(sql, values).fetchall()
    else:
        async with state["pool"].acquire() as pg:
            practice_id = await pg.fetchval(STAFF_SQL.format(d="$1", t="$2"), digest, staff_cutoff)
            if practice_id is None:
                return error("authentication required")
            try:
                sql, values = honest_statement(
                    False, practice_id, first, open_cursor(after, practice_id), flt, want_counts
                )
            except BadRequest as exc:
                return error(str(exc))
            rows = await pg.fetch(sql, *values)
    counts = None
    if want_counts:
        cs, cn = rows[0]["cs"], rows[0]["cn"]
        if IS_SQLITE:
            cs, cn = orjson.loads(cs), orjson.loads(cn)
        counts = dict(zip(cs or [], cn or [], strict=True))
        if rows[0]["id"] is None:  # the page is empty: the one row carries the counts only
            rows = []
    return Response(
        render(rows, first, counts, flt.get("status"), SEALER, practice_id),
        media_type="application/json",
    )


async def same_sql(request: Request) -> Response:
    """The service's own statements (PatientReader's builders) through the bare driver."""
    from onboarding.listing import OnboardingFilter, PageWants, PatientReader
    from onboarding.status import PortalStatus

    digest = token_digest(request)
    if digest is None:
        return error("authentication required")
    try:
        first, after, flt, want_counts = parse(await request.body())
    except BadRequest as exc:
        return error(str(exc))
    staff_cutoff = dt.datetime.now(dt.UTC) - STAFF_TTL
    data = OnboardingFilter(
        statuses=[PortalStatus(s) for s in flt["status"]] if flt.get("status") else None,
        search=flt.get("search"),
        has_email=flt.get("hasEmail"),
        reachable_by=flt.get("reachableBy"),
    )

    # The workload's query selects every field: the service joins all, and brings the
    # counts in the page statement when the query has them.
    wants = PageWants(counts=want_counts)

    def statement(practice_id: int, dialect: str) -> tuple[str, list[Any]]:
        reader = PatientReader(practice_id, TEMP_TTL, dialect=dialect)
        return reader.page_statement(first, open_cursor(after, practice_id), data, wants=wants)

    if IS_SQLITE:
        conn: sqlite3.Connection = state["sqlite"]
        row = conn.execute(STAFF_SQL.format(d="?1", t="?2"), (digest, staff_cutoff)).fetchone()
        if row is None:
            return error("authentication required")
        practice_id = row[0]
        try:
            sql, values = statement(practice_id, "sqlite")
        except BadRequest as exc:
            return error(str(exc))
        rows = conn.execute(sql, values).fetchall()
    else:
        async with state["pool"].acquire() as pg:
            practice_id = await pg.fetchval(STAFF_SQL.format(d="$1", t="$2"), digest, staff_cutoff)
            if practice_id is None:
                return error("authentication required")
            try:
                sql, values = statement(practice_id, "postgres")
            except BadRequest as exc:
                return error(str(exc))
            rows = await pg.fetch(sql, *values)
    counts = None
    if want_counts:
        counts = {
            s.value: n for s, n in PatientReader._counts_of(rows[0]["cs"], rows[0]["cn"]).items()
        }
        if rows[0]["id"] is None:
            rows = []
    return Response(
        render(rows, first, counts, flt.get("status"), SEALER, practice_id),
        media_type="application/json",
    )


async def health(_: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/graphql", honest, methods=["POST"]),
        Route("/same-sql/graphql", same_sql, methods=["POST"]),
        Route("/healthz", health),
    ],
    lifespan=lifespan,
)
