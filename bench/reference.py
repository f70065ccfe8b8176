"""The reference: a bare Starlette route that answers the Onboarding Tool's page query
with raw asyncpg (or sqlite3) and orjson, and nothing else.

It does the same database work as the service for the same request: the staff token
lookup, the page statement (patient, account and newest link joined, status computed in
SQL, shared-address count, keyset cursor) and the grouped counts statement, and returns
the same JSON the GraphQL endpoint returns (``bench.run`` checks that they are equal
before it measures). It skips what a framework adds: GraphQL parsing and validation,
resolvers, type objects, middleware, logging. The SQL is a copy of the service's
(onboarding/listing.py and onboarding/status.py at the time this was written) so that
the reference stays fixed while the service changes.

Run: ``BENCH_REF_DATABASE_URL=... uvicorn bench.reference:app``.
"""

from __future__ import annotations

import base64
import binascii
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

STATUSES = (
    "DISABLED",
    "NO_EMAIL",
    "NOT_INVITED",
    "INVITED",
    "INVITATION_EXPIRED",
    "CREDENTIALS_ISSUED",
    "ACTIVE",
)

# The status reads the copies of the account's and newest link's state that triggers keep
# on patient (migration 0006), as the service does.
STATUS_SQL = """CASE
 WHEN NOT p.portal_enabled THEN 'DISABLED'
 WHEN p.account_active THEN 'ACTIVE'
 WHEN p.staff_password_set_at > {cutoff} THEN 'CREDENTIALS_ISSUED'
 WHEN p.email_key IS NULL THEN 'NO_EMAIL'
 WHEN p.link_open_until > {now} THEN 'INVITED'
 WHEN p.last_link_id IS NOT NULL THEN 'INVITATION_EXPIRED'
 ELSE 'NOT_INVITED' END"""

SELECT = """SELECT p.id, p.practice_id, p.chart_number, p.first_name, p.last_name,
 p.date_of_birth, p.email, p.zip_code, p.chart_status, p.portal_enabled,
 a.id AS a_id, a.username, a.must_change_password, a.last_login_at, a.locked_until,
 l.id AS l_id, l.sent_to, l.created_at AS l_created_at, l.expires_at AS l_expires_at,
 l.used_at AS l_used_at, l.revoked_at AS l_revoked_at, l.delivery_status, l.purpose,
 CASE WHEN p.email_key IS NULL THEN 0 ELSE (SELECT COUNT(*) FROM patient q
   WHERE q.practice_id = p.practice_id AND q.email_key = p.email_key AND q.id <> p.id)
 END AS shared,
 {status} AS status
FROM {source}
LEFT JOIN portal_account a ON a.patient_id = p.id
LEFT JOIN link_token l ON l.id = p.last_link_id"""

FROM = "FROM patient p"

SEARCH_TEXT = (
    "(p.last_name_key || ' ' || p.first_name_key || ' ' || lower(p.chart_number)"
    " || ' ' || coalesce(p.email_key, ''))"
)

TEMP_TTL = dt.timedelta(days=int(os.environ.get("BENCH_REF_TEMP_TTL_DAYS", "7")))
MAX_PAGE = 200

# The same text Tortoise stores and binds on SQLite.
sqlite3.register_adapter(dt.datetime, lambda v: v.isoformat(" "))
sqlite3.register_adapter(dt.date, lambda v: v.isoformat())


class BadRequest(Exception):
    pass


class Params:
    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        n = len(self.values)
        return f"?{n}" if self.sqlite else f"${n}"


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise BadRequest("bad cursor") from exc
    if kind != "patient" or not number.isdigit() or len(number) > 12:
        raise BadRequest("bad cursor")
    return int(number)


def encode_cursor(patient_id: int) -> str:
    return base64.urlsafe_b64encode(f"patient:{patient_id}".encode()).decode()


def build_statements(
    sqlite: bool, practice_id: int, first: int, after: str | None, flt: dict[str, Any] | None
) -> tuple[tuple[str, list[Any]] | None, tuple[str, list[Any]], list[str] | None]:
    now = dt.datetime.now(dt.UTC)
    flt = flt or {}
    statuses = flt.get("status")

    def base() -> tuple[Params, list[str], str]:
        params = Params(sqlite)
        status = STATUS_SQL.format(now=params(now), cutoff=params(now - TEMP_TTL))
        where = [f"p.practice_id = {params(practice_id)}"]
        if flt.get("hasEmail") is True:
            where.append("p.email_key IS NOT NULL")
        elif flt.get("hasEmail") is False:
            where.append("p.email_key IS NULL")
        for term in (flt.get("search") or "").replace(",", " ").split():
            pattern = params(like_pattern(term.casefold()))
            if not sqlite and len(term) >= 3:  # the trigram-indexed form, as the service
                where.append(f"{SEARCH_TEXT} LIKE {pattern} ESCAPE '\\'")
                continue
            columns = (
                "p.last_name_key",
                "p.first_name_key",
                "LOWER(p.chart_number)",
                "p.email_key",
            )
            where.append(
                "(" + " OR ".join(f"{c} LIKE {pattern} ESCAPE '\\'" for c in columns) + ")"
            )
        return params, where, status

    params, where, status = base()
    counts_sql = (
        f"SELECT s.status AS status, COUNT(*) AS n FROM (SELECT {status} AS status {FROM}"
        f" WHERE {' AND '.join(where)}) s GROUP BY s.status"
    )
    counts = (counts_sql, list(params.values))

    page: tuple[str, list[Any]] | None
    if statuses is not None and not statuses:
        page = None
    else:
        if statuses:
            where.append(f"({status}) IN ({', '.join(params(s) for s in statuses)})")
        if after:
            after_id = params(decode_cursor(after))
            where.append(
                "(p.last_name_key, p.first_name_key, p.id) > (SELECT c.last_name_key,"
                f" c.first_name_key, c.id FROM patient c WHERE c.id = {after_id}"
                f" AND c.practice_id = {params(practice_id)})"
            )
        limit = params(first + 1)
        indexed_search = not sqlite and any(
            len(t) >= 3 for t in (flt.get("search") or "").replace(",", " ").split()
        )
        if indexed_search:  # the trigram matches, then sorted, as the service
            source = f"(SELECT * FROM patient p WHERE {' AND '.join(where)} OFFSET 0) p"
            sql = SELECT.format(status=status, source=source)
        else:
            sql = SELECT.format(status=status, source="patient p") + " WHERE " + " AND ".join(where)
        sql += f" ORDER BY p.last_name_key, p.first_name_key, p.id LIMIT {limit}"
        page = (sql, params.values)
    return page, counts, statuses


def _dt(value: Any) -> Any:
    # asyncpg hands back datetimes (orjson writes them); sqlite3 the stored ISO text.
    if value is None or not isinstance(value, str):
        return value
    return dt.datetime.fromisoformat(value)


def render(
    rows: list[Any], first: int, counts: dict[str, int], statuses: list[str] | None
) -> bytes:
    now = dt.datetime.now(dt.UTC)
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
                "cursor": encode_cursor(r["id"]),
                "node": {
                    "id": str(r["id"]),
                    "chartNumber": r["chart_number"],
                    "firstName": r["first_name"],
                    "lastName": r["last_name"],
                    "dateOfBirth": r["date_of_birth"],
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
    wanted = set(statuses) if statuses is not None else None
    body = {
        "data": {
            "onboarding": {
                "edges": edges,
                "pageInfo": {
                    "endCursor": edges[-1]["cursor"] if edges else None,
                    "hasNextPage": len(rows) > first,
                },
                "totalCount": sum(n for s, n in counts.items() if wanted is None or s in wanted),
                "statusCounts": [{"status": s, "count": counts.get(s, 0)} for s in STATUSES],
            }
        }
    }
    return orjson.dumps(body)


def parse(body: bytes) -> tuple[int, str | None, dict[str, Any] | None]:
    try:
        variables = orjson.loads(body).get("variables") or {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest("bad JSON") from exc
    first = variables.get("first") or 50
    if not 1 <= first <= MAX_PAGE:
        raise BadRequest("bad first")
    return first, variables.get("after"), variables.get("filter")


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def error(message: str, status: int = 200) -> Response:
    return Response(
        orjson.dumps({"data": None, "errors": [{"message": message}]}),
        status_code=status,
        media_type="application/json",
    )


DATABASE_URL = os.environ.get("BENCH_REF_DATABASE_URL", "")
IS_SQLITE = DATABASE_URL.startswith("sqlite")
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


async def onboarding(request: Request) -> Response:
    token = bearer(request)
    if token is None:
        return error("authentication required")
    digest = hashlib.sha256(token.encode()).hexdigest()
    try:
        first, after, flt = parse(await request.body())
    except BadRequest as exc:
        return error(str(exc))
    if IS_SQLITE:
        conn: sqlite3.Connection = state["sqlite"]
        staff = conn.execute(
            "SELECT practice_id FROM staff_user WHERE token_digest = ? AND active", (digest,)
        ).fetchone()
        if staff is None:
            return error("authentication required")
        try:
            page, counts, statuses = build_statements(True, staff[0], first, after, flt)
        except BadRequest as exc:
            return error(str(exc))
        rows = conn.execute(page[0], page[1]).fetchall() if page else []
        count_rows = conn.execute(counts[0], counts[1]).fetchall()
    else:
        async with state["pool"].acquire() as pg:
            practice_id = await pg.fetchval(
                "SELECT practice_id FROM staff_user WHERE token_digest = $1 AND active", digest
            )
            if practice_id is None:
                return error("authentication required")
            try:
                page, counts, statuses = build_statements(False, practice_id, first, after, flt)
            except BadRequest as exc:
                return error(str(exc))
            rows = await pg.fetch(page[0], *page[1]) if page else []
            count_rows = await pg.fetch(counts[0], *counts[1])
    result = {r["status"]: int(r["n"]) for r in count_rows}
    return Response(render(rows, first, result, statuses), media_type="application/json")


async def health(_: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[Route("/graphql", onboarding, methods=["POST"]), Route("/healthz", health)],
    lifespan=lifespan,
)
