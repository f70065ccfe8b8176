"""The event loop's CPU per login, in process (issue 15, "logins stay out of the readers'
way"): the real app over httpx's ASGI transport, logins one at a time, the main
thread's CPU time per login (``time.thread_time``: argon2 runs on its own thread and is
not counted; the in-process client is, the same on both sides of a comparison).
Five batches of 30 logins; prints each and the median.

    .venv/bin/python -m bench.logins --database-url URL      # leaves the account lee.bench
    .venv/bin/python -m bench.login_cpu --database-url URL
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time

import httpx

from bench.logins import LOGIN


async def measure(batches: int, per_batch: int) -> list[float]:
    from core.settings import Settings
    from graph.app import create_app

    app = create_app(Settings())
    logging.disable(logging.CRITICAL)
    out = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c,
    ):
        for _ in range(5):  # warm-up, and the account must exist
            answer = (await c.post("/graphql", json={"query": LOGIN})).json()
            assert answer["data"]["login"]["sessionToken"], answer
        for _ in range(batches):
            started = time.thread_time()
            for _ in range(per_batch):
                await c.post("/graphql", json={"query": LOGIN})
            out.append((time.thread_time() - started) / per_batch * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("PORTAL_")]:
        del os.environ[key]
    os.environ.update(
        {
            "PORTAL_DATABASE_URL": args.database_url,
            "PORTAL_RATE_LIMIT_LOGIN": "1000000/minute",
            "PORTAL_LOCKOUT_THRESHOLD": "100",
        }
    )
    values = asyncio.run(measure(5, 30))
    print(
        "event-loop CPU per login (ms):",
        " ".join(f"{v:.2f}" for v in values),
        f"median {statistics.median(values):.2f}; load average"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    )


if __name__ == "__main__":
    main()
