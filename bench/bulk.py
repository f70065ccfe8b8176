"""The 10,000-patient invitation (issue 15, item 5), against a hand-written reference
measured in the same run.

For each round (order alternating) on the same practice and the same patients:

- **service**: one ``sendInvitation`` request over HTTP to the real service (``portal
  serve``, 1 worker, production settings), with every id; the practice has one webhook
  endpoint subscribed to every type, so the request writes links, outbox messages, audit
  rows, events *and* webhook deliveries;
- **reference**: the same rows written by the least SQL written by hand (asyncpg, one
  connection, ``onboarding/`` not imported except the status rule, which must be the
  same): the lock and the read joined in one statement, the shared-address check, one
  statement for the links and the patients pointed at them, one each for outbox and
  audit (``unnest``), one revoking the older links, one for events + deliveries +
  ``pg_notify``. (One CTE writing links, patients, outbox and audit together measured
  slower: PostgreSQL joins the CTE's rows blind.)

PostgreSQL: time in the database is read from ``pg_stat_database`` (``active_time`` and
``idle_in_transaction_time`` of the benchmark database, PostgreSQL 14+): nothing else
uses the database during a round, and the backends flush their counters when they exit,
so the service is started for each round and stopped after its request, and the
reference's connection is closed after its work. ``pg_stat_statements`` needs a server
restart to load (``shared_preload_libraries``), which a shared machine does not get.

SQLite (``--database-url sqlite://...``): the service over HTTP, then the reference
(``sqlite3``, the same statements), wall times only (SQLite has no server to ask).

    .venv/bin/python -m bench.data --database-url postgres://postgres@127.0.0.1:5432/NAME_bench \\
        --patients 100000 --out plan.json
    .venv/bin/python -m bench.bulk --database-url postgres://postgres@127.0.0.1:5432/NAME_bench \\
        --plan plan.json [--patients 10000] [--rounds 3]

Each round invites the same patients again, so from the second round on every one of
them also has an outstanding link to revoke (both sides do that work). The touched tables
are vacuumed before each measurement, as autovacuum would between two bulk actions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import RESULTS, free_port, read_json, require_loopback, sqlite_path
from bench.servers import BENCH_SECRET_KEY, service_env, start_service
from bench.workload import SEND_INVITATION_MUTATION

TABLES = "patient, link_token, outbox_message, audit_event, portal_event, webhook_delivery"
LINK_BASE = "https://portal.example.invalid/activate"
TTL = timedelta(hours=72)


def _asyncpg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


async def pg_times(conn: Any) -> dict[str, float]:
    """The database's cumulative session counters, in seconds."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT active_time, idle_in_transaction_time FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    return {
        "active": row["active_time"] / 1000,
        "idle_in_tx": row["idle_in_transaction_time"] / 1000,
    }


async def vacuum(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_url(url))
    try:
        await conn.execute(f"VACUUM (ANALYZE) {TABLES}")
    finally:
        await conn.close()


async def ensure_endpoint(url: str, practice_id: int) -> None:
    """One endpoint subscribed to every event type (``event_types`` empty), so every
    invitation also enqueues a webhook delivery (issue 13)."""
    from core.clock import utcnow
    from models import WebhookEndpoint
    from models.database import connect, disconnect

    await connect(url)
    try:
        if not await WebhookEndpoint.filter(practice_id=practice_id, enabled=True).exists():
            await WebhookEndpoint.create(
                practice_id=practice_id,
                url="http://127.0.0.1:9/never-called",
                event_types=[],
                secret="whsec_" + "b" * 32,
                created_at=utcnow(),
            )
    finally:
        await disconnect()


# --- the reference ------------------------------------------------------------------


def _clinic(row: Any) -> dict[str, Any]:
    from mail.compose import display_phone

    return {
        "name": row["name"],
        "phone": display_phone(row["phone"]),
        "website": row["website"],
        "reply_to": row["reply_to"],
        "sender": row["sender_name"] or row["name"],
        "tz": row["time_zone"],
    }


def _params(clinic: dict[str, Any], row: Any, nonce: str, digest: str, expires: str) -> str:
    return orjson.dumps(
        {
            "clinic": clinic,
            "lang": row["preferred_language"],
            "first_name": row["first_name"],
            "link_base": LINK_BASE,
            "link_nonce": nonce,
            "link_digest": digest,
            "expires_at": expires,
            "variant": "reset" if row["has_password"] else "setup",
        }
    ).decode()


REF_READ = (
    "SELECT p.id, p.first_name, p.email, p.email_key, p.preferred_language, p.chart_status,"
    " p.portal_enabled, a.password_hash IS NOT NULL AS has_password FROM patient p"
    " LEFT JOIN portal_account a ON a.patient_id = p.id"
    " WHERE p.id = ANY($1::int[]) AND p.practice_id = $2 ORDER BY p.id FOR UPDATE OF p"
)
REF_SHARED = (
    "SELECT email_key FROM patient WHERE practice_id = $1 AND email_key = ANY($2::text[])"
    " GROUP BY email_key HAVING COUNT(*) > 1"
)
REF_LINKS = """
WITH new AS (
  INSERT INTO link_token (practice_id, patient_id, digest, purpose, sent_to, created_by_id,
    created_at, expires_at, delivery_status, dob_failures, is_reminder, channel)
  SELECT $1, pid, dg, 'invitation', addr, $2, $3, $4, 'QUEUED', 0, FALSE, 'email'
  FROM unnest($5::int[], $6::text[], $7::text[]) AS v(pid, dg, addr)
  RETURNING id, patient_id)
UPDATE patient p SET last_link_id = new.id FROM new WHERE p.id = new.patient_id
RETURNING p.id, new.id
"""
REF_OUTBOX = """
INSERT INTO outbox_message (practice_id, patient_id, link_id, kind, to_addr, params,
  channel, status, attempts, next_attempt_at, created_at)
SELECT $1, pid, lid, 'invitation', addr, params, 'email', 'pending', 0, $2, $2
FROM unnest($3::int[], $4::int[], $5::text[], $6::jsonb[]) AS m(pid, lid, addr, params)
"""
REF_AUDIT = """
INSERT INTO audit_event (practice_id, patient_id, actor_type, actor_id, action, outcome,
  occurred_at, client_addr, request_id)
SELECT $1, pid, 'staff', $2, 'invitation.sent', 'success', $3, '127.0.0.1', 'bench'
FROM unnest($4::int[]) AS a(pid)
"""
REF_REVOKE = (
    "UPDATE link_token l SET revoked_at = $2, revoke_reason = 'superseded' FROM patient p"
    " WHERE l.patient_id = ANY($1::int[]) AND l.used_at IS NULL AND l.revoked_at IS NULL"
    " AND p.id = l.patient_id AND l.id <> p.last_link_id"
)


def ref_events_sql() -> str:
    from onboarding.status import status_sql

    return f"""
WITH ev AS (
  INSERT INTO portal_event (practice_id, patient_id, seq, type, portal_status, occurred_at)
  SELECT p.practice_id, p.id, COALESCE(latest.seq, 0) + 1, 'invitation.sent',
    {status_sql("$3", "$4")}, $3
  FROM patient p LEFT JOIN (SELECT patient_id, MAX(seq) AS seq FROM portal_event
    WHERE patient_id = ANY($1::int[]) GROUP BY patient_id) latest ON latest.patient_id = p.id
  WHERE p.id = ANY($1::int[]) AND p.practice_id = $2
  RETURNING id, patient_id),
d AS (
  INSERT INTO webhook_delivery (endpoint_id, event_id, practice_id, patient_id, status,
    attempts, next_attempt_at, created_at)
  SELECT w.id, ev.id, $2, ev.patient_id, 'pending', 0, $3, $3
  FROM ev CROSS JOIN (SELECT id FROM webhook_endpoint WHERE practice_id = $2 AND enabled) w)
SELECT pg_notify('portal_events', $2::text || ':' || string_agg(id::text, ',' ORDER BY id))
FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / 400 AS g FROM ev) x GROUP BY g
"""


async def reference_pg(url: str, practice_id: int, staff_id: int, ids: list[int]) -> int:
    """The invitation written by hand; returns how many were sent."""
    import asyncpg

    from core.clock import utcnow
    from core.link_keys import LinkKeys

    keys = LinkKeys(BENCH_SECRET_KEY)
    issued = {pid: keys.issue() for pid in ids}  # before the transaction, like the service
    conn = await asyncpg.connect(_asyncpg_url(url))
    try:
        clinic = _clinic(await conn.fetchrow("SELECT * FROM practice WHERE id = $1", practice_id))
        async with conn.transaction():
            rows = await conn.fetch(REF_READ, ids, practice_id)
            keys_seen = [r["email_key"] for r in rows if r["email_key"]]
            shared = {r[0] for r in await conn.fetch(REF_SHARED, practice_id, keys_seen)}
            now = utcnow()
            expires = now + TTL
            expires_text = expires.isoformat()
            send = [
                r
                for r in rows
                if r["portal_enabled"]
                and r["chart_status"] in ("ACTIVE", "PROSPECTIVE")
                and r["email"]
            ]
            # Read like the service reads it; the request confirms shared addresses
            # (confirmSharedEmail: true), so none is left out.
            del shared
            pids = [r["id"] for r in send]
            emails = [r["email"] for r in send]
            link_of = dict(
                await conn.fetch(
                    REF_LINKS,
                    practice_id,
                    staff_id,
                    now,
                    expires,
                    pids,
                    [issued[p].digest for p in pids],
                    emails,
                )
            )
            await conn.execute(
                REF_OUTBOX,
                practice_id,
                now,
                pids,
                [link_of[p] for p in pids],
                emails,
                [
                    _params(clinic, r, issued[r["id"]].nonce, issued[r["id"]].digest, expires_text)
                    for r in send
                ],
            )
            await conn.execute(REF_AUDIT, practice_id, staff_id, now, pids)
            await conn.execute(REF_REVOKE, pids, now)
            await conn.execute(ref_events_sql(), pids, practice_id, now, now - timedelta(days=7))
        return len(pids)
    finally:
        await conn.close()


# --- SQLite reference -----------------------------------------------------------------


def reference_sqlite(path: str, practice_id: int, staff_id: int, ids: list[int]) -> int:
    from core.clock import utcnow
    from core.link_keys import LinkKeys
    from onboarding.status import status_sql

    keys = LinkKeys(BENCH_SECRET_KEY)
    issued = {pid: keys.issue() for pid in ids}
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        clinic = _clinic(
            db.execute("SELECT * FROM practice WHERE id = ?", [practice_id]).fetchone()
        )
        db.execute("BEGIN IMMEDIATE")
        ids_json = json.dumps(ids)
        rows = db.execute(
            "SELECT p.id, p.first_name, p.email, p.email_key, p.preferred_language,"
            " p.chart_status, p.portal_enabled, a.password_hash IS NOT NULL AS has_password"
            " FROM patient p LEFT JOIN portal_account a ON a.patient_id = p.id"
            " WHERE p.id IN (SELECT value FROM json_each(?)) AND p.practice_id = ?",
            [ids_json, practice_id],
        ).fetchall()
        send = [
            r
            for r in rows
            if r["portal_enabled"] and r["chart_status"] in ("ACTIVE", "PROSPECTIVE") and r["email"]
        ]
        now = utcnow()
        expires = now + TTL
        db.executemany(
            "INSERT INTO link_token (practice_id, patient_id, digest, purpose, sent_to,"
            " created_by_id, created_at, expires_at, delivery_status, dob_failures,"
            " is_reminder, channel) VALUES (?, ?, ?, 'invitation', ?, ?, ?, ?, 'QUEUED', 0, 0,"
            " 'email')",
            [
                (practice_id, r["id"], issued[r["id"]].digest, r["email"], staff_id, now, expires)
                for r in send
            ],
        )
        pids = json.dumps([r["id"] for r in send])
        db.execute(
            "UPDATE patient SET last_link_id = (SELECT MAX(l.id) FROM link_token l"
            " WHERE l.patient_id = patient.id) WHERE id IN (SELECT value FROM json_each(?))",
            [pids],
        )
        db.execute(
            "UPDATE link_token SET revoked_at = ?, revoke_reason = 'superseded'"
            " WHERE patient_id IN (SELECT value FROM json_each(?)) AND used_at IS NULL"
            " AND revoked_at IS NULL AND id <> (SELECT last_link_id FROM patient p"
            " WHERE p.id = link_token.patient_id)",
            [now, pids],
        )
        expires_text = expires.isoformat()
        links = dict(
            db.execute(
                "SELECT id, last_link_id FROM patient WHERE id IN (SELECT value FROM json_each(?))",
                [pids],
            ).fetchall()
        )
        db.executemany(
            "INSERT INTO outbox_message (practice_id, patient_id, link_id, kind, to_addr, params,"
            " channel, status, attempts, next_attempt_at, created_at)"
            " VALUES (?, ?, ?, 'invitation', ?, ?, 'email', 'pending', 0, ?, ?)",
            [
                (
                    practice_id,
                    r["id"],
                    links[r["id"]],
                    r["email"],
                    _params(clinic, r, issued[r["id"]].nonce, issued[r["id"]].digest, expires_text),
                    now,
                    now,
                )
                for r in send
            ],
        )
        db.executemany(
            "INSERT INTO audit_event (practice_id, patient_id, actor_type, actor_id, action,"
            " outcome, occurred_at, client_addr, request_id)"
            " VALUES (?, ?, 'staff', ?, 'invitation.sent', 'success', ?, '127.0.0.1', 'bench')",
            [(practice_id, r["id"], staff_id, now) for r in send],
        )
        before = db.execute("SELECT COALESCE(MAX(id), 0) FROM portal_event").fetchone()[0]
        db.execute(
            "INSERT INTO portal_event (practice_id, patient_id, seq, type, portal_status,"
            " occurred_at) SELECT p.practice_id, p.id, COALESCE(latest.seq, 0) + 1,"
            f" 'invitation.sent', {status_sql('?1', '?2')}, ?1 FROM patient p"
            " LEFT JOIN (SELECT patient_id, MAX(seq) AS seq FROM portal_event"
            " WHERE patient_id IN (SELECT value FROM json_each(?3)) GROUP BY patient_id)"
            " latest ON latest.patient_id = p.id"
            " WHERE p.id IN (SELECT value FROM json_each(?3))",
            [now, now - timedelta(days=7), pids],
        )
        db.execute(
            "INSERT INTO webhook_delivery (endpoint_id, event_id, practice_id, patient_id,"
            " status, attempts, next_attempt_at, created_at) SELECT w.id, e.id, e.practice_id,"
            " e.patient_id, 'pending', 0, ?, ? FROM portal_event e, webhook_endpoint w"
            " WHERE e.id > ? AND w.practice_id = ? AND w.enabled",
            [now, now, before, practice_id],
        )
        db.execute("COMMIT")
        return len(send)
    finally:
        db.close()


# --- the service ----------------------------------------------------------------------


def invite_http(port: int, token: str, ids: list[int]) -> tuple[float, int]:
    body = {
        "query": SEND_INVITATION_MUTATION,
        "variables": {"input": {"patientIds": [str(i) for i in ids], "confirmSharedEmail": True}},
    }
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(600.0)) as client:
        started = time.perf_counter()
        response = client.post(
            f"http://127.0.0.1:{port}/graphql",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        seconds = time.perf_counter() - started
    payload = response.json()
    if response.status_code != 200 or "errors" in payload:
        raise RuntimeError(f"sendInvitation failed: {str(payload)[:1000]}")
    results = payload["data"]["sendInvitation"]["results"]
    return seconds, sum(1 for r in results if r["invitation"] and not r["userErrors"])


async def service_round(
    url: str,
    practice: dict[str, Any],
    ids: list[int],
    warm_id: int,
    log: Path,
    root: Path | None = None,
) -> dict[str, float]:
    import asyncpg

    port = free_port()
    env = service_env(url, free_port(), {})
    if root is not None:
        env["PYTHONPATH"] = str(root)
        proc = start_service(env, port, 1, log, root)
    else:
        proc = start_service(env, port, 1, log)
    postgres = not url.startswith("sqlite")
    stats = await asyncpg.connect(_asyncpg_url(url)) if postgres else None
    try:
        # Warm: the service's connections, statements and GraphQL document are ready.
        await asyncio.to_thread(invite_http, port, practice["token"], [warm_id])
        if stats is not None:
            # Backends flush their session counters after 10 s idle (or at exit).
            await asyncio.sleep(11)
            before = await pg_times(stats)
        seconds, sent = await asyncio.to_thread(invite_http, port, practice["token"], ids)
        proc.stop()  # its backends exit, and flush what they counted
        out = {"http": seconds, "sent": float(sent)}
        if stats is not None:
            await asyncio.sleep(1.0)
            after = await pg_times(stats)
            out["db_active"] = after["active"] - before["active"]
            out["idle_in_tx"] = after["idle_in_tx"] - before["idle_in_tx"]
        return out
    finally:
        proc.stop()
        if stats is not None:
            await stats.close()


async def reference_round(url: str, practice: dict[str, Any], ids: list[int]) -> dict[str, float]:
    import asyncpg

    if url.startswith("sqlite"):
        started = time.perf_counter()
        sent = reference_sqlite(sqlite_path(url), practice["id"], practice["staff_id"], ids)
        return {"http": time.perf_counter() - started, "sent": float(sent)}
    stats = await asyncpg.connect(_asyncpg_url(url))
    try:
        before = await pg_times(stats)
        started = time.perf_counter()
        sent = await reference_pg(url, practice["id"], practice["staff_id"], ids)
        seconds = time.perf_counter() - started
        await asyncio.sleep(1.0)  # the closed connection's backend flushes as it exits
        after = await pg_times(stats)
        return {
            "http": seconds,
            "sent": float(sent),
            "db_active": after["active"] - before["active"],
            "idle_in_tx": after["idle_in_tx"] - before["idle_in_tx"],
        }
    finally:
        await stats.close()


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def main_async(args: argparse.Namespace) -> None:
    plan = read_json(Path(args.plan))
    url = args.database_url
    require_loopback(url)
    practice = max(plan["practices"], key=lambda p: len(p["invitable"]))
    invitable = sorted(practice["invitable"])
    if len(invitable) < args.patients + 1:
        raise SystemExit(f"the largest practice has {len(invitable)} invitable patients")
    ids, warm_id = invitable[: args.patients], invitable[args.patients]
    postgres = not url.startswith("sqlite")
    await ensure_endpoint(url, practice["id"])
    log = RESULTS / "bulk-service.log"
    print(
        f"bulk invitation of {len(ids)} patients (practice {practice['id']}, "
        f"{practice['size']} patients), {'PostgreSQL' if postgres else 'SQLite'}, "
        f"{args.rounds} rounds; load average {loadavg()}",
        flush=True,
    )
    sides = ["service", "reference"] + (["baseline"] if args.baseline_root else [])
    rows: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for round_no in range(args.rounds):
        order = sides if round_no % 2 == 0 else sides[::-1]
        for side in order:
            if postgres:
                await vacuum(url)
            if side == "service":
                result = await service_round(url, practice, ids, warm_id, log)
            elif side == "baseline":
                result = await service_round(
                    url, practice, ids, warm_id, log, Path(args.baseline_root)
                )
            else:
                result = await reference_round(url, practice, ids)
            rows[side].append(result)
            extra = (
                f", db active {result['db_active']:.3f} s, idle in transaction"
                f" {result['idle_in_tx']:.3f} s"
                if postgres
                else ""
            )
            print(
                f"  round {round_no + 1} {side:9s}: {result['http']:.3f} s"
                f" ({'wall' if side == 'reference' else 'HTTP'}){extra}, sent {int(result['sent'])};"
                f" load {loadavg()}",
                flush=True,
            )

    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[side])

    print("median over rounds:")
    keys = ["http", "db_active", "idle_in_tx"] if postgres else ["http"]
    names = {
        "http": "end to end",
        "db_active": "active in the database",
        "idle_in_tx": "idle in transaction",
    }
    for key in keys:
        svc, ref = med("service", key), med("reference", key)
        ratio = f"{svc / ref:.2f}x" if ref > 0 else "n/a"
        line = f"  {names[key]:24s} service {svc:.3f} s   reference {ref:.3f} s   service/reference {ratio}"
        if args.baseline_root:
            base = med("baseline", key)
            line += f"   baseline {base:.3f} s ({base / ref:.2f}x)" if ref > 0 else ""
        print(line)
    print(f"load average at the end {loadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--plan", required=True, help="the plan bench.data wrote")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline-root",
        help="another checkout (e.g. a worktree of main) whose service is measured too",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
