"""Is it argon2 or the writes? One client reads Onboarding Tool pages, alone and while 10
clients run ``setCredentials`` at a fixed pace, once with a password (argon2id hashing)
and once with a username only (the same request and transaction, no hashing).

    .venv/bin/python -m bench.beside_writes --url http://127.0.0.1:8000 \\
        --pages bench/results/<run>/postgres/pages.txt \\
        --credentials bench/results/<run>/postgres/credentials.txt

Start the service on the benchmark's database first (``bench.run`` leaves
``portal_bench`` behind; see bench/README.md). The request files are the ones
``bench.run`` writes. Each phase prints p50 and p99 of the page client; the pace of the
writers is the same in both loaded phases (``--rate`` requests per second in all), so the
difference between them is what hashing adds."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx


def split(line: str) -> tuple[str, str]:
    token, _, body = line.split("\t", 2)
    return token, body


async def reader(url: str, pages: list[str]) -> tuple[float, float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for line in pages:
            token, body = split(line)
            started = time.perf_counter()
            response = await client.post(
                "/graphql",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


async def writers(
    url: str, lines: list[str], stop: asyncio.Event, rate: float, with_password: bool
) -> int:
    interval = 10 / rate  # ten writers share the rate
    done = 0

    async def one(start: int) -> None:
        nonlocal done
        index = start
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while not stop.is_set():
                began = time.perf_counter()
                token, body = split(lines[index % len(lines)])
                index += 10
                if not with_password:
                    request = json.loads(body)
                    request["variables"]["input"].pop("password", None)
                    body = json.dumps(request)
                await client.post(
                    "/graphql",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
                done += 1
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))

    await asyncio.gather(*(one(i) for i in range(10)))
    return done


async def phase(url: str, pages: list[str], creds: list[str], rate: float, mode: str) -> str:
    if mode == "alone":
        p50, p99 = await reader(url, pages)
        return f"pages alone:                     p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
    stop = asyncio.Event()
    load = asyncio.create_task(writers(url, creds, stop, rate, mode == "password"))
    await asyncio.sleep(1)
    started = time.perf_counter()
    p50, p99 = await reader(url, pages)
    stop.set()
    done = await load
    per_s = done / (time.perf_counter() - started + 1)
    label = (
        "beside setCredentials, hashing:"
        if mode == "password"
        else "beside setCredentials, no hash:"
    )
    return f"{label} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  (writes {per_s:.0f}/s)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--pages", required=True, type=Path)
    parser.add_argument("--credentials", required=True, type=Path)
    parser.add_argument("--requests", type=int, default=400, help="pages per phase")
    parser.add_argument("--rate", type=float, default=30, help="setCredentials per second")
    args = parser.parse_args()
    pages = args.pages.read_text().splitlines()[: args.requests]
    creds = args.credentials.read_text().splitlines()
    for mode in ("alone", "username-only", "password", "alone"):
        print(await phase(args.url, pages, creds, args.rate, mode), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
