"""EXPLAIN (ANALYZE, BUFFERS) of the Onboarding page's statements, the service's and the
honest reference's, per page shape, on the largest practice of a bench database (issue 15).

``python -m bench.plans --postgres-url URL --plan plan.json [--shape first] [--repeat 20]``

Prints each statement's plan (first run) and the median execution time over
``--repeat`` runs as PostgreSQL reports it (no network, no Python), planning included:
EXPLAIN plans every run. Then the same statements **as the service sends them**: one
prepared statement (asyncpg, as Tortoise's client does), executed ``--repeat`` times,
median wall time per execution on this loopback connection. PostgreSQL may answer a
prepared statement from a cached (generic) plan after its fifth run, so this column can
be below the EXPLAIN one by the planning time; it is what a page costs the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.reference import honest_statement
from bench.workload import STATUSES

SHAPES: dict[str, dict[str, Any]] = {
    "first": {},
    "status": {"filter": {"status": [STATUSES[3], STATUSES[4]]}},
    "search": {"filter": {"search": "smi"}},
    # a rare status (about 2%): answered by its range index, not a walk of the practice
    "rare": {"filter": {"status": ["CREDENTIALS_ISSUED"]}},
    "deep": {"deep": True},
}


async def explain(conn: Any, sql: str, values: list[Any], repeat: int) -> tuple[str, float, int]:
    """Plan text, median planning + execution time, and the buffers the last run touched
    (shared hits + reads: what the statement reads, unaffected by the machine's load)."""
    plan_text = ""
    times = []
    buffers = 0
    for i in range(repeat):
        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *values)
        doc = json.loads(rows[0][0])[0]
        times.append(doc["Execution Time"] + doc.get("Planning Time", 0.0))
        top = doc["Plan"]
        buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
        if i == 0:
            text = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *values)
            plan_text = "\n".join(r[0] for r in text)
    return plan_text, statistics.median(times), buffers


async def prepared(conn: Any, sql: str, values: list[Any], repeat: int) -> float:
    """Median milliseconds of one execution of ``sql`` prepared once, rows fetched."""
    statement = await conn.prepare(sql)
    times = []
    for _ in range(max(repeat, 10)):
        start = time.perf_counter()
        await statement.fetch(*values)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def run(url: str, plan: dict[str, Any], shapes: list[str], repeat: int, show: bool) -> None:
    import asyncpg

    from onboarding.listing import OnboardingFilter, PageWants, PatientReader
    from onboarding.status import PortalStatus

    practice = max(plan["practices"], key=lambda p: p["size"])
    pid = practice["id"]
    key = tuple(practice["cursor_keys"][0])
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        for shape in shapes:
            spec = SHAPES[shape]
            flt = spec.get("filter", {})
            boundary = key if spec.get("deep") else None
            reader = PatientReader(pid, timedelta(days=7), dialect="postgres")
            data = OnboardingFilter(
                statuses=[PortalStatus(s) for s in flt["status"]] if flt.get("status") else None,
                search=flt.get("search"),
            )
            wants = PageWants(counts=True)
            service = [
                ("service page+counts", *reader.page_statement(50, boundary, data, wants=wants))
            ]
            only_page = [("service page alone", *reader.page_statement(50, boundary, data))]
            honest = [
                ("honest page+counts", *honest_statement(False, pid, 50, boundary, flt, True))
            ]
            total = {"service": 0.0, "honest": 0.0, "page alone": 0.0}
            blocks = {"service": 0, "honest": 0, "page alone": 0}
            sent = {"service": 0.0, "honest": 0.0, "page alone": 0.0}
            groups = (("service", service), ("honest", honest), ("page alone", only_page))
            for group, statements in groups:
                for name, sql, values in statements:
                    text, ms, buffers = await explain(conn, sql, values, repeat)
                    total[group] += ms
                    blocks[group] += buffers
                    sent[group] += await prepared(conn, sql, values, repeat)
                    print(
                        f"--- {shape}: {name}: median {ms:.2f} ms (planning + execution),"
                        f" {buffers} buffers"
                    )
                    if show:
                        print(text)
            print(
                f"=== {shape} (practice of {practice['size']}): service {total['service']:.2f} ms,"
                f" honest {total['honest']:.2f} ms in PostgreSQL; the service's page without"
                f" counts {total['page alone']:.2f} ms (with counts"
                f" {total['service'] / max(total['page alone'], 1e-9):.1f}x); buffers: service"
                f" {blocks['service']}, honest {blocks['honest']}, page alone {blocks['page alone']}"
            )
            print(
                f"=== {shape}, prepared as the service sends it (median of {max(repeat, 10)}"
                f" executions, round trip included): service {sent['service']:.2f} ms,"
                f" honest {sent['honest']:.2f} ms, page alone {sent['page alone']:.2f} ms"
                f" (with counts {sent['service'] / max(sent['page alone'], 1e-9):.1f}x)"
            )
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", required=True)
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--shape", action="append", choices=list(SHAPES))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quiet", action="store_true", help="medians only, no plans")
    args = ap.parse_args()
    plan = json.loads(args.plan.read_text())
    asyncio.run(
        run(args.postgres_url, plan, args.shape or list(SHAPES), args.repeat, not args.quiet)
    )


if __name__ == "__main__":
    main()
