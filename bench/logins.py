"""Does a login storm stall cheap reads? (issue: hardening, SECURITY HASH-5)

Starts the real service (``portal serve``, SQLite in a temporary folder) and measures the
latency of a cheap staff query (``patient(id)``) alone, then with 8 logins in flight at
all times (argon2id at OWASP parameters), both in the same run. Prints one table and
the ratio of medians. Only 127.0.0.1; bounded by ``--requests``.

    .venv/bin/python -m bench.logins [--requests 300] [--logins 8] [--database-url URL] [--repeat 3]

Besides latency it reads the server's threads from /proc: the CPU of the event loop
(the main thread) and of the argon2 threads in each phase, so the event-loop cost of a
login (its statements and Python around the hash) shows apart from the hash itself.
The machine's load average is printed with each repetition: on a shared machine only
the ratios of one repetition compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import free_port
from bench.servers import base_env

PATIENT = "query($id: ID!) { patient(id: $id) { id portalStatus } }"
CREATE = """mutation { createPatient(input: {chartNumber: "B-1", firstName: "Lee", lastName: "Bench",
  dateOfBirth: "1970-01-01", email: "lee.bench@example.com", zipCode: "02139"}) { patient { id } } }"""
ENABLE = "mutation($id: ID!) { enablePortal(input: {patientIds: [$id]}) { results { userErrors { code } } } }"
CREDENTIALS = """mutation($id: ID!) { setCredentials(input: {patientId: $id, username: "lee.bench",
  password: "copper-lantern-meadow-71"}) { userErrors { code } } }"""
LOGIN = 'mutation { login(input: {username: "lee.bench", password: "copper-lantern-meadow-71"}) { sessionToken userErrors { code } } }'


def portal(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "portal_cli.py", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


async def timed(client: httpx.AsyncClient, query: str, variables: dict, token: str) -> float:
    start = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    elapsed = time.perf_counter() - start
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    return elapsed * 1000


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the server's threads: the event loop (the main
    thread), the argon2 hashing threads (told apart by their nice value, PORTAL_HASH_NICE:
    Python does not name OS threads), and the rest."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"loop": 0.0, "argon2": 0.0, "other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the name: state is field 3, utime 14, stime 15, nice 19 (proc(5)).
        seconds = (int(fields[11]) + int(fields[12])) / tick
        niced = int(fields[16]) > 0
        key = "loop" if int(task.name) == pid else "argon2" if niced else "other"
        out[key] += seconds
    return out


async def measure(
    base: str, token: str, pid: str, requests: int, logins: int, server_pid: int
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(20):  # warm-up
            await timed(client, PATIENT, {"id": pid}, token)
        cpu0 = thread_cpu(server_pid)
        alone = [await timed(client, PATIENT, {"id": pid}, token) for _ in range(requests)]
        cpu1 = thread_cpu(server_pid)
        # Logins one at a time: the event loop's CPU per login, without contention.
        solo = 20
        for _ in range(solo):
            await timed(client, LOGIN, {}, "")
        cpu_solo = thread_cpu(server_pid)

        stop = asyncio.Event()
        login_times: list[float] = []

        async def storm() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30) as own:
                while not stop.is_set():
                    login_times.append(await timed(own, LOGIN, {}, ""))

        workers = [asyncio.create_task(storm()) for _ in range(logins)]
        await asyncio.sleep(1.0)  # let the storm fill the hashing pool
        done_before = len(login_times)
        cpu2 = thread_cpu(server_pid)
        loaded = [await timed(client, PATIENT, {"id": pid}, token) for _ in range(requests)]
        cpu3 = thread_cpu(server_pid)
        done = len(login_times) - done_before
        stop.set()
        await asyncio.gather(*workers)
    # The event loop's CPU per login: the loaded phase's loop CPU less what the reads
    # cost alone, over the logins finished in it.
    loop_reads = cpu1["loop"] - cpu0["loop"]
    loop_loaded = cpu3["loop"] - cpu2["loop"]
    return {
        "alone": alone,
        "with_logins": loaded,
        "logins": login_times,
        "logins_in_phase": done,
        "loop_ms_per_read": loop_reads / requests * 1000,
        "loop_ms_per_login": (loop_loaded - loop_reads) / max(done, 1) * 1000,
        "loop_ms_per_login_alone": (cpu_solo["loop"] - cpu1["loop"]) / solo * 1000,
        "argon2_ms_per_login_alone": (cpu_solo["argon2"] - cpu1["argon2"]) / solo * 1000,
        "argon2_ms_per_login": (cpu3["argon2"] - cpu2["argon2"]) / max(done, 1) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--logins", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a throwaway database on 127.0.0.1 (default: SQLite in a temp folder)",
    )
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    os.chdir(root)
    folder = tempfile.mkdtemp(prefix="bench-logins-")
    env = base_env()
    env.update(
        {
            "PORTAL_DATABASE_URL": args.database_url or f"sqlite://{folder}/bench.sqlite3",
            "PORTAL_MAIL_DIR": f"{folder}/mail",
            "PORTAL_RATE_LIMIT_LOGIN": "1000000/minute",
            "PORTAL_LOCKOUT_THRESHOLD": "100",
        }
    )
    practice = portal(env, "create-practice", "--name", "Bench Clinic")
    token = portal(env, "create-staff", "--practice", practice, "--name", "Bench Desk")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "portal_cli.py", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            pid = c.post("/graphql", json={"query": CREATE}).json()["data"]["createPatient"][
                "patient"
            ]["id"]
            c.post("/graphql", json={"query": ENABLE, "variables": {"id": pid}})
            c.post("/graphql", json={"query": CREDENTIALS, "variables": {"id": pid}})
        results = []
        for _ in range(args.repeat):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            results.append(
                (load, asyncio.run(measure(base, token, pid, args.requests, args.logins, server.pid)))
            )
    finally:
        server.terminate()
        server.wait(timeout=20)

    def row(name: str, values: list[float]) -> str:
        q = statistics.quantiles(values, n=100)
        return f"| {name:<34} | {len(values):>5} | {statistics.median(values):>8.1f} | {q[89]:>8.1f} | {q[98]:>8.1f} |"

    backend = "PostgreSQL" if args.database_url else "SQLite"
    ratios = []
    for index, (load, result) in enumerate(results, 1):
        print(f"\n{backend}, repetition {index}, load average before it: {load}")
        print(f"| {'scenario (ms)':<34} | {'n':>5} | {'p50':>8} | {'p90':>8} | {'p99':>8} |")
        print(f"|{'-' * 36}|{'-' * 7}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
        print(row("patient(id) alone", result["alone"]))
        print(row(f"patient(id) with {args.logins} logins in flight", result["with_logins"]))
        print(row("  login (argon2id verify)", result["logins"]))
        ratio = statistics.median(result["with_logins"]) / statistics.median(result["alone"])
        ratios.append(ratio)
        print(
            f"median ratio with logins / alone: {ratio:.2f}x (target <= 2x), cpu cores:"
            f" {os.cpu_count()}\nserver CPU: event loop {result['loop_ms_per_read']:.2f} ms"
            f" per read; one login at a time: event loop {result['loop_ms_per_login_alone']:.2f} ms,"
            f" argon2 {result['argon2_ms_per_login_alone']:.1f} ms per login; in the storm"
            f" ({result['logins_in_phase']} logins): event loop"
            f" {result['loop_ms_per_login']:.2f} ms, argon2 {result['argon2_ms_per_login']:.1f} ms"
            " per login"
        )
    if len(ratios) > 1:
        print(f"\nratios: {', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
