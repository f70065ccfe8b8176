"""Where the 10,000-patient invitation's database floor is (issue 15, item 5), PostgreSQL.

``python -m bench.bulk`` measures the service's request against a hand-written reference.
This measures what no implementation of today's data model can avoid, and what a
redesign would still pay, so that the item's target (< 0.5 s in the database) can be
judged against the floor rather than against the service. Every scenario runs in one
transaction that is rolled back (the benchmark database is left as it was), on the same
patients as the service's bulk request (the practice's enabled patients with an address,
in id order), with the same ``SET LOCAL gin_pending_list_limit`` the service uses. Each
statement's time is taken around its round trip (asyncpg, bound arrays from ``unnest``
as the service sends them), setup work is not timed; the touched tables are vacuumed
before each scenario (untimed), as in `bench.bulk`.

Scenarios:

- **rows**: only the rows today's contract writes per patient: a link, an outbox message,
  an audit row, an ``invitation.sent`` event and one webhook delivery per endpoint of the
  practice. No patient state, no revocation, no reads. The tables' keys are the
  database's as migrated (since migration 0022 a link's only key is its patient's).
- **narrow**: a redesign that writes no ``patient`` row: the link state (last link, open
  until, status class and the name keys of the status-filter index) in a narrow table of
  its own (a real table created and filled inside the transaction, untimed, with a key
  on the last link as ``patient.last_link_id`` has); outbox messages and
  webhook deliveries gone (the link row is the message, endpoints read the event log
  with a cursor); older links still revoked by an UPDATE; audit rows and events kept.
- **narrow-no-revoke**: the same, with older links superseded by the pointer alone (a
  link is valid only while it is the patient's last one), so no revoking UPDATE.

Reads (the locked read of the patients, accounts, the shared-address check: about 50 ms
in ``bench.bulk``'s statement log) and COMMIT come on top of every scenario.

    .venv/bin/python -m bench.bulk_floor --database-url postgres://postgres@127.0.0.1:5432/NAME_bench \\
        [--patients 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.bulk import TABLES, TTL
from bench.common import require_loopback

LINK_INSERT = (
    "INSERT INTO link_token (practice_id, patient_id, digest, purpose, sent_to, created_by_id,"
    " created_at, expires_at, delivery_status, dob_failures, is_reminder, channel)"
    " SELECT $1::int, v.pid, v.digest, 'invitation', v.sent_to, NULL, $4::timestamptz,"
    " $5::timestamptz, 'queued', 0, false, 'email'"
    " FROM unnest($2::int[], $3::text[], $6::text[]) AS v(pid, digest, sent_to)"
    " RETURNING id, patient_id, sent_to"
)
OUTBOX = (
    "INSERT INTO outbox_message (practice_id, patient_id, link_id, kind, to_addr, params,"
    " channel, status, attempts, next_attempt_at, created_at)"
    " SELECT $1::int, v.pid, v.lid, 'invitation', v.addr, v.params, 'email', 'pending', 0,"
    " $5::timestamptz, $5::timestamptz"
    " FROM unnest($2::int[], $3::int[], $4::text[], $6::jsonb[]) AS v(pid, lid, addr, params)"
)
AUDIT = (
    "INSERT INTO audit_event (practice_id, patient_id, actor_type, actor_id, action, outcome,"
    " occurred_at, client_addr, request_id)"
    " SELECT $1::int, v.pid, 'staff', NULL, 'invitation.sent', 'ok', $3::timestamptz,"
    " '127.0.0.1', 'bench' FROM unnest($2::int[]) AS v(pid)"
)
EVENTS = (
    "INSERT INTO portal_event (practice_id, patient_id, seq, type, portal_status, occurred_at)"
    " SELECT $1::int, v.pid, COALESCE(latest.seq, 0) + 1, 'invitation.sent', 'INVITED',"
    " $3::timestamptz FROM unnest($2::int[]) AS v(pid)"
    " LEFT JOIN LATERAL (SELECT e.seq FROM portal_event e WHERE e.patient_id = v.pid"
    " ORDER BY e.seq DESC LIMIT 1) latest ON true"
    " RETURNING id, patient_id"
)
DELIVERIES = (
    "INSERT INTO webhook_delivery (status, attempts, next_attempt_at, created_at, endpoint_id,"
    " event_id, patient_id, practice_id)"
    " SELECT 'pending', 0, $4::timestamptz, $4::timestamptz, w.id, v.eid, v.pid, $1::int"
    " FROM unnest($2::bigint[], $3::int[]) AS v(eid, pid)"
    " CROSS JOIN (SELECT id FROM webhook_endpoint WHERE practice_id = $1 AND enabled) w"
)
REVOKE = (
    "UPDATE link_token SET revoked_at = $3::timestamptz, revoke_reason = 'superseded'"
    " WHERE patient_id = ANY($1::int[]) AND used_at IS NULL AND revoked_at IS NULL"
    " AND id NOT IN (SELECT unnest($2::int[]))"
)
NARROW_SETUP = [
    # A real table (a temporary one writes no WAL and lives in local buffers), with the
    # key on the last link that ``patient.last_link_id`` has today; rolled back with
    # the rest.
    "CREATE TABLE bench_link_state (patient_id int PRIMARY KEY, practice_id int NOT NULL,"
    " status_class varchar NOT NULL, last_name_key varchar NOT NULL,"
    " first_name_key varchar NOT NULL, last_link_id int REFERENCES link_token (id),"
    " link_open_until timestamptz)",
    "INSERT INTO bench_link_state SELECT id, practice_id, status_class, last_name_key,"
    " first_name_key, last_link_id, link_open_until FROM patient",
    "CREATE INDEX ON bench_link_state (practice_id, status_class, last_name_key, first_name_key,"
    " patient_id)",
    "CREATE INDEX ON bench_link_state (practice_id, link_open_until) WHERE link_open_until IS NOT NULL",
    "ANALYZE bench_link_state",
]
NARROW_LINKS = (
    f"WITH new AS ({LINK_INSERT}), pointed AS (UPDATE bench_link_state s SET last_link_id = new.id,"
    " link_open_until = $5::timestamptz, status_class = 'INVITED' FROM new"
    " WHERE s.patient_id = new.patient_id) SELECT id, patient_id FROM new"
)

SCENARIOS = ("rows", "narrow", "narrow-no-revoke")


async def _pick(conn: asyncpg.Connection, count: int) -> tuple[int, list[int], list[str]]:
    """The practice with the most patients an invitation can reach, and its first ``count``
    of them in id order (the service's bulk request takes the same)."""
    practice = await conn.fetchval(
        "SELECT practice_id FROM patient WHERE portal_enabled AND email IS NOT NULL"
        " GROUP BY practice_id ORDER BY count(*) DESC LIMIT 1"
    )
    rows = await conn.fetch(
        "SELECT id, email FROM patient WHERE practice_id = $1 AND portal_enabled"
        " AND email IS NOT NULL ORDER BY id LIMIT $2",
        practice,
        count,
    )
    return practice, [r["id"] for r in rows], [r["email"] for r in rows]


async def _scenario(
    conn: asyncpg.Connection, name: str, practice: int, ids: list[int], emails: list[str]
) -> dict[str, float]:
    now = datetime.now(UTC)
    expires = now + TTL
    digests = [hashlib.sha256(secrets.token_bytes(32)).hexdigest() for _ in ids]
    times: dict[str, float] = {}

    async def timed(label: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        started = time.perf_counter()
        rows = await conn.fetch(sql, *args)
        times[label] = time.perf_counter() - started
        return rows

    # A rolled-back run leaves its rows and index entries dead behind it; unvacuumed, the
    # next runs slow down (one measured 859 ms against 393-453 ms), so each scenario
    # starts from vacuumed tables, as bench.bulk's rounds do.
    await conn.execute(f"VACUUM (ANALYZE) {TABLES}")
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute("SET LOCAL gin_pending_list_limit = '64MB'")
        if name == "rows":
            links = await timed("links", LINK_INSERT, practice, ids, digests, now, expires, emails)
            params = [
                json.dumps({"first_name": "Ann", "language": "en", "link_id": r["id"]})
                for r in links
            ]
            link_ids = [r["id"] for r in links]
            pids = [r["patient_id"] for r in links]
            addresses = [r["sent_to"] for r in links]
            await timed("outbox", OUTBOX, practice, pids, link_ids, addresses, now, params)
        else:
            for sql in NARROW_SETUP:
                await conn.execute(sql)
            # The copy of the old design's pointer trigger would update patient rows.
            await conn.execute("ALTER TABLE link_token DISABLE TRIGGER link_token_copy")
            links = await timed(
                "links+state", NARROW_LINKS, practice, ids, digests, now, expires, emails
            )
            link_ids = [r["id"] for r in links]
            pids = [r["patient_id"] for r in links]
            if name == "narrow":
                await timed("revoke", REVOKE, ids, link_ids, now)
        await timed("audit", AUDIT, practice, pids, now)
        events = await timed("events", EVENTS, practice, pids, now)
        if name == "rows":
            await timed(
                "deliveries",
                DELIVERIES,
                practice,
                [r["id"] for r in events],
                [r["patient_id"] for r in events],
                now,
            )
    finally:
        await tx.rollback()
    times["total"] = sum(times.values())
    return times


async def run(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.database_url)
    try:
        practice, ids, emails = await _pick(conn, args.patients)
        print(
            f"bulk floor: {len(ids)} patients of practice {practice}, {args.rounds} rounds,"
            " each scenario one rolled-back transaction"
        )
        results: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in args.scenarios}
        for round_no in range(args.rounds):
            # Alternate the order so that cache warmth does not favour one scenario.
            order = args.scenarios if round_no % 2 == 0 else list(reversed(args.scenarios))
            for name in order:
                times = await _scenario(conn, name, practice, ids, emails)
                for label, seconds in times.items():
                    results[name][label].append(seconds)
                shown = ", ".join(f"{k} {v * 1000:.0f}" for k, v in times.items())
                print(f"  round {round_no + 1} {name:<17} ms: {shown}")
        print("median over rounds (ms; reads, about 50 ms, and COMMIT come on top):")
        for name in args.scenarios:
            parts = ", ".join(
                f"{label} {statistics.median(values) * 1000:.0f}"
                for label, values in results[name].items()
            )
            print(f"  {name:<17} {parts}")
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {SCENARIOS}"
    )
    args = ap.parse_args()
    require_loopback(args.database_url)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios: {sorted(unknown)}")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
