"""One small statement outside a transaction, through Tortoise as the service runs it,
with asyncpg's default reset on pool release and with the service's ``_keep_session``
(models/database.py), in the same run: the per-statement cost of that reset.

    .venv/bin/python -m bench.statements [--database-url postgres://…] [-n 3000]

Needs a PostgreSQL database with the service's schema (for example ``portal_bench`` after
``python -m bench.run``, or any database ``portal migrate`` has set up)."""

from __future__ import annotations

import argparse
import asyncio
import time

from tortoise import Tortoise, connections

from models import database


async def per_statement(url: str, n: int, keep_session: bool) -> float:
    config = database.tortoise_config(url)
    if not keep_session:
        del config["connections"]["default"]["credentials"]["reset"]
    await Tortoise.init(config=config, _enable_global_fallback=True)
    try:
        conn = connections.get("default")
        for _ in range(200):  # warm the pool and the statement cache
            await conn.execute_query_dict("SELECT id FROM patient WHERE id = $1", [1])
        started = time.perf_counter()
        for _ in range(n):
            await conn.execute_query_dict("SELECT id FROM patient WHERE id = $1", [1])
        return (time.perf_counter() - started) / n
    finally:
        await Tortoise.close_connections()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/portal_bench")
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    results: dict[bool, list[float]] = {False: [], True: []}
    for keep in (False, True, False, True):  # interleaved, so drift hits both alike
        results[keep].append(await per_statement(args.database_url, args.n, keep))
    reset, keep = min(results[False]), min(results[True])
    print(f"asyncpg reset on release: {reset * 1e6:.0f} us per statement")
    print(f"service (_keep_session):  {keep * 1e6:.0f} us per statement")
    print(f"ratio: {reset / keep:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
