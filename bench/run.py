"""The benchmark's single entry point: ``python -m bench.run [--backend postgres|sqlite|both]
[--quick] [--patients N] [--duration S]``.

For each backend: build a realistic practice set (bench.data), start the real service
under uvicorn and a bare reference (bench.reference), load both over HTTP from separate
processes (wrk, or bench.load), time the bulk invitation and the mail worker, and print
one table and one line of ratios against the targets. Everything runs on 127.0.0.1 and
every phase is bounded in time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import cpu
from bench.common import (
    DEFAULT_POSTGRES_URL,
    RESULTS,
    ROOT,
    free_port,
    require_loopback,
    write_json,
)
from bench.load import start_load, wrk_available
from bench.servers import (
    Proc,
    service_env,
    start_reference,
    start_service,
    start_smtp_sink,
)
from bench.workload import (
    SEND_INVITATION_MUTATION,
    credential_requests,
    page_requests,
    read_requests,
    write_requests,
)

TARGETS = {
    "throughput_vs_reference": 0.15,  # at least
    "one_client_p99_over_p50": 2.0,  # at most
    "p99_hashing_over_alone": 1.25,  # at most
    "bulk_db_seconds": 0.5,  # under
    "bulk_vs_one_by_one": 8.0,  # at least
    "mail_per_second": 500.0,  # at least
    "two_workers_over_one": 1.3,  # at least
}
HASHING_CLIENTS = 10
COUNT_PHASE_CAP = 240.0  # seconds: a fixed-count phase that takes longer is cut off


_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"{time.monotonic() - _T0:6.1f}s {message}", file=sys.stderr, flush=True)


@dataclass
class Options:
    backends: list[str]
    quick: bool
    patients: int
    duration: float
    warmup: float
    connections: int
    bulk: int
    one_by_one: int
    latency_requests: int
    loader: str
    profile: bool
    postgres_url: str
    service_env: dict[str, str]
    wait_quiet: float
    out: Path


@dataclass
class BackendResult:
    backend: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    slow_statements: list[Any] = field(default_factory=list)
    plan_summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# --- helpers ----------------------------------------------------------------------

_database: str | None = None  # the benchmark's PostgreSQL database, for the CPU accounting
_wait_quiet = 0.0


class Watch:
    """CPU that other programs on the machine took while the block ran (in cores). With
    --wait-quiet, first waits for them to calm down."""

    other = 0.0

    def __enter__(self) -> Watch:
        if _wait_quiet > 0:
            reading = cpu.wait_quiet(_database, _wait_quiet)
            if reading >= 0.15:
                log(f"    other programs still use {reading:.2f} cores; measuring anyway")
        self.start = cpu.snapshot(_database)
        return self

    def __exit__(self, *_: object) -> None:
        self.other = cpu.other_cores(self.start, cpu.snapshot(_database))


def http_client() -> httpx.Client:
    # trust_env=False: never a proxy, never a .netrc; straight to 127.0.0.1.
    return httpx.Client(trust_env=False, timeout=httpx.Timeout(300.0))


def run_step(cmd: list[str], env: dict[str, str], timeout: float, log_path: Path) -> dict[str, Any]:
    """A helper process that prints one WORKJSON line."""
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[2:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    for line in proc.stdout.splitlines():
        if line.startswith("WORKJSON "):
            return json.loads(line[len("WORKJSON ") :])  # type: ignore[no-any-return]
    raise RuntimeError(f"{' '.join(cmd)} printed no result")


def measure(
    opts: Options,
    name: str,
    url: str,
    requests_file: Path,
    connections: int,
    count: int | None = None,
) -> dict[str, Any]:
    """A warm-up, then ``opts.duration`` seconds of load or, with ``count`` (one client),
    exactly the first ``count`` requests of the file."""
    if opts.warmup > 0:
        start_load(
            "warm-up",
            url,
            requests_file,
            connections=connections,
            duration=opts.warmup,
            loader=opts.loader,
        ).result()
    with Watch() as watch:
        summary = start_load(
            name,
            url,
            requests_file,
            connections=connections,
            duration=COUNT_PHASE_CAP if count else opts.duration,
            loader=opts.loader,
            count=count,
        ).result()
    summary["connections"] = connections
    summary["other_cpu"] = watch.other
    log(
        f"    {name}: {summary['rps']:.1f} req/s, p50 {summary['p50_us'] / 1000:.1f} ms,"
        f" p99 {summary['p99_us'] / 1000:.1f} ms, errors {summary['errors']},"
        f" other programs {watch.other:.2f} cores"
    )
    return summary


def load_row(backend: str, scenario: str, s: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend": backend,
        "scenario": scenario,
        "conns": s["connections"],
        "n": s["requests"],
        "per_s": s["rps"],
        "p50_ms": s["p50_us"] / 1000,
        "p90_ms": s["p90_us"] / 1000,
        "p99_ms": s["p99_us"] / 1000,
        "total_s": s["duration_us"] / 1e6,
        "errors": s["errors"],
        "other_cpu": s.get("other_cpu"),
        "note": "",
    }


def item_row(
    backend: str,
    scenario: str,
    n: int,
    per_s: float,
    total_s: float,
    errors: int,
    note: str,
    latencies: list[float] | None = None,
    other_cpu: float | None = None,
) -> dict[str, Any]:
    """A row for a one-off operation (bulk invitation, mail dispatch)."""
    p50 = p90 = p99 = None
    if latencies:
        ordered = sorted(latencies)
        pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000  # noqa: E731
        p50, p90, p99 = pick(0.5), pick(0.9), pick(0.99)
    return {
        "backend": backend,
        "scenario": scenario,
        "conns": 1,
        "n": n,
        "per_s": per_s,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "total_s": total_s,
        "errors": errors,
        "other_cpu": other_cpu,
        "note": note,
    }


def verify_same_json(
    ref_url: str, svc_url: str, requests: list[tuple[str, str]]
) -> tuple[int, str]:
    """The reference must answer exactly what the service answers."""
    mismatches = 0
    first_diff = ""
    with http_client() as client:
        for token, body in requests:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            a = client.post(svc_url, content=body, headers=headers).json()
            b = client.post(ref_url, content=body, headers=headers).json()
            if "errors" in a:
                raise RuntimeError(f"the service answered errors: {a['errors']}")
            if a != b:
                mismatches += 1
                if not first_diff:
                    first_diff = _diff(a, b)
    return mismatches, first_diff


def _diff(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _diff(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _diff(x, y, f"{path}[{i}]")
    return f"{path}: service {a!r} vs reference {b!r}"


def profile_service(
    opts: Options, svc: Proc, url: str, requests_file: Path, out: Path
) -> dict[str, Any] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        log("    py-spy not found (pip install py-spy): profile skipped")
        return None
    raw = out / "profile-service.txt"
    seconds = max(3, round(opts.duration))
    spy_proc = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(svc.pid),
            "-d",
            str(seconds),
            "-f",
            "raw",
            "-o",
            str(raw),
            "-r",
            "200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    start_load(
        "profile",
        url,
        requests_file,
        connections=opts.connections,
        duration=seconds,
        loader=opts.loader,
    ).result()
    try:
        _, err = spy_proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        spy_proc.kill()
        return None
    if not raw.exists():
        log(f"    py-spy failed: {err.strip()[-500:]}")
        return None
    return summarise_profile(raw)


AREAS = [
    ("strawberry", "strawberry (GraphQL types, resolvers, serialisation)"),
    ("graphql", "graphql-core (parse, validate, execute)"),
    ("tortoise", "tortoise-orm"),
    ("pypika", "tortoise-orm"),
    ("asyncpg", "asyncpg driver"),
    ("aiosqlite", "sqlite driver"),
    ("sqlite3", "sqlite driver"),
    ("starlette", "starlette"),
    ("uvicorn", "uvicorn / HTTP"),
    ("httptools", "uvicorn / HTTP"),
    ("structlog", "logging"),
    ("logging", "logging"),
    ("pydantic", "pydantic"),
    ("onboarding/", "service: onboarding/"),
    ("graph/", "service: graph/"),
    ("core/", "service: core/"),
    ("models/", "service: models/"),
    ("asyncio", "asyncio / event loop"),
    ("uvloop", "asyncio / event loop"),
    ("json", "json"),
    ("dataclasses", "dataclasses"),
    ("enum", "enum"),
    ("base64", "service: graph/"),
]


def _area(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    location = frame.rsplit("(", 1)[-1]
    for needle, area in AREAS:
        if needle in location:
            return area
    return "other: " + location.split(":")[0][-40:]


def summarise_profile(raw: Path) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            f
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_time[_strip_line(leaf)] += count
        areas[_area(leaf)] += count
        for f in set(_strip_line(f) for f in frames):
            inclusive[f] += count
    return {
        "samples": total,
        "areas": [(a, n / total) for a, n in areas.most_common(14)] if total else [],
        "self": [(f, n / total) for f, n in self_time.most_common(20)] if total else [],
        "inclusive": [(f, n / total) for f, n in inclusive.most_common(40)] if total else [],
        "raw": str(raw),
    }


def _strip_line(frame: str) -> str:
    name, _, location = frame.rpartition(" (")
    return f"{name} ({location.rsplit(':', 1)[0]})" if name else frame


# --- one backend ------------------------------------------------------------------


def bench_backend(backend: str, opts: Options) -> BackendResult:
    result = BackendResult(backend)
    out = opts.out / backend
    out.mkdir(parents=True, exist_ok=True)
    if backend == "postgres":
        url = opts.postgres_url
        require_loopback(url)
    else:
        url = f"sqlite://{out / 'portal_bench.sqlite3'}"

    global _database
    _database = urlsplit(url).path.lstrip("/") if backend == "postgres" else None
    smtp_port = free_port()
    env = service_env(url, smtp_port, opts.service_env)

    log(f"[{backend}] generating {opts.patients} patients over 20 practices ...")
    started = time.perf_counter()
    plan_path = out / "plan.json"
    data = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.data",
            "--database-url",
            url,
            "--patients",
            str(opts.patients),
            "--out",
            str(plan_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    (out / "data.log").write_text(data.stdout + data.stderr)
    if data.returncode != 0:
        raise RuntimeError(f"data generation failed:\n{data.stderr[-3000:]}")
    log(data.stderr.strip().splitlines()[-1])
    plan = json.loads(plan_path.read_text())
    result.plan_summary = {
        k: plan[k]
        for k in ("patients", "with_email", "accounts", "status_mix", "link_kinds", "load_seconds")
    }
    result.figures["data_seconds"] = time.perf_counter() - started

    pages = read_requests(write_requests(out / "pages.txt", page_requests(plan, 4000, seed=1)))
    pages_file = out / "pages.txt"
    creds_file = write_requests(out / "credentials.txt", credential_requests(plan, 4000, seed=2))

    with ExitStack() as stack:
        sink = start_smtp_sink(smtp_port, out / "smtp-sink.log")
        stack.callback(sink.stop)

        # 1. The reference and the service, one process each: same answers, then load.
        ref_port, svc_port = free_port(), free_port()
        ref = start_reference(url, ref_port, out / "reference.log")
        stack.callback(ref.stop)
        svc = start_service(env, svc_port, 1, out / "service-1.log")
        stack.callback(svc.stop)
        ref_url = f"http://127.0.0.1:{ref_port}/graphql"
        svc_url = f"http://127.0.0.1:{svc_port}/graphql"
        sample = pages[:: max(1, len(pages) // 40)][:40]
        mismatches, diff = verify_same_json(ref_url, svc_url, sample)
        if mismatches:
            note = f"reference differs from the service on {mismatches}/{len(sample)} pages: {diff}"
            result.notes.append(note)
            log("    WARNING: " + note)
        else:
            log(f"    reference and service agree on {len(sample)} sample pages")

        log(
            f"[{backend}] page throughput, {opts.connections} connections, {opts.duration:g} s each"
        )
        ref_tp = measure(opts, "reference", ref_url, pages_file, opts.connections)
        ref_one = measure(opts, "reference 1 client", ref_url, pages_file, 1, opts.latency_requests)
        ref.stop()
        svc_tp = measure(opts, "service 1 worker", svc_url, pages_file, opts.connections)
        result.rows.append(load_row(backend, "reference page (asyncpg/sqlite3 + orjson)", ref_tp))
        result.rows.append(load_row(backend, "service page, 1 worker", svc_tp))
        if opts.profile:
            log(f"[{backend}] profiling the service under the same load (py-spy)")
            result.profile = profile_service(opts, svc, svc_url, pages_file, out)
        svc.stop()

        # 2. Two workers.
        port2 = free_port()
        svc2 = start_service(env, port2, 2, out / "service-2.log")
        stack.callback(svc2.stop)
        svc2_tp = measure(
            opts,
            "service 2 workers",
            f"http://127.0.0.1:{port2}/graphql",
            pages_file,
            opts.connections,
        )
        result.rows.append(load_row(backend, "service page, 2 workers", svc2_tp))
        svc2.stop()

        # 3. One client alone, then beside 10 clients setting passwords.
        port1 = free_port()
        svc = start_service(env, port1, 1, out / "service-1b.log")
        stack.callback(svc.stop)
        svc_url = f"http://127.0.0.1:{port1}/graphql"
        log(
            f"[{backend}] page latency with one client, alone and beside {HASHING_CLIENTS} setCredentials clients"
        )
        alone = measure(opts, "service 1 client", svc_url, pages_file, 1, opts.latency_requests)
        result.rows.append(load_row(backend, "reference page, 1 client", ref_one))
        result.rows.append(load_row(backend, "service page, 1 client", alone))
        if opts.warmup > 0:
            warm = start_load(
                "warm-up",
                svc_url,
                creds_file,
                connections=HASHING_CLIENTS,
                duration=opts.warmup,
                loader=opts.loader,
            )
            warm.result()
        # The same requests as the one-client phase, while the password load runs
        # throughout (it is stopped when the page client is done).
        watch = Watch().__enter__()
        hashing = start_load(
            "setCredentials",
            svc_url,
            creds_file,
            connections=HASHING_CLIENTS,
            duration=COUNT_PHASE_CAP + 30,
            loader=opts.loader,
        )
        time.sleep(1.0)  # let the hashing load reach its stride
        beside = start_load(
            "page beside hashing",
            svc_url,
            pages_file,
            connections=1,
            duration=COUNT_PHASE_CAP,
            loader=opts.loader,
            count=opts.latency_requests,
        ).result()
        beside["connections"] = 1
        hashing.interrupt()
        hashed = hashing.result()
        watch.__exit__()
        beside["other_cpu"] = hashed["other_cpu"] = watch.other
        hashed["connections"] = HASHING_CLIENTS
        log(
            f"    page beside hashing: p50 {beside['p50_us'] / 1000:.1f} ms, p99 {beside['p99_us'] / 1000:.1f} ms;"
            f" setCredentials {hashed['rps']:.1f}/s, errors {hashed['errors']}"
        )
        result.rows.append(
            load_row(backend, f"service page, 1 client + {HASHING_CLIENTS} setCredentials", beside)
        )
        result.rows.append(
            load_row(backend, f"  setCredentials (argon2id), {HASHING_CLIENTS} clients", hashed)
        )

        # 4. Bulk invitation over HTTP, and one by one.
        practice = plan["practices"][0]
        invitable = list(practice["invitable"])
        random.Random(3).shuffle(invitable)
        singles_n = min(opts.one_by_one, max(1, len(invitable) // 10))
        bulk_n = min(opts.bulk, len(invitable) - singles_n)
        bulk_ids, single_ids = invitable[:bulk_n], invitable[bulk_n : bulk_n + singles_n]
        worker = [sys.executable, "-m", "bench.worker"]
        run_step([*worker, "park", "--database-url", url], env, 300, out / "worker.log")
        log(
            f"[{backend}] sendInvitation over HTTP: {bulk_n} ids in one request, then {singles_n} one by one"
        )
        headers = {"Authorization": f"Bearer {practice['token']}"}
        with http_client() as client:
            body = {
                "query": SEND_INVITATION_MUTATION,
                "variables": {
                    "input": {"patientIds": [str(i) for i in bulk_ids], "confirmSharedEmail": True}
                },
            }
            with Watch() as bulk_watch:
                t0 = time.perf_counter()
                response = client.post(svc_url, json=body, headers=headers)
                bulk_seconds = time.perf_counter() - t0
            payload = response.json()
            if "errors" in payload or response.status_code != 200:
                raise RuntimeError(f"bulk sendInvitation failed: {str(payload)[:2000]}")
            results = payload["data"]["sendInvitation"]["results"]
            bulk_sent = sum(1 for r in results if r["invitation"] and not r["userErrors"])
            bulk_errors = len(results) - bulk_sent
            latencies: list[float] = []
            single_errors = 0
            single_watch = Watch().__enter__()
            t0 = time.perf_counter()
            for pid in single_ids:
                body = {
                    "query": SEND_INVITATION_MUTATION,
                    "variables": {"input": {"patientIds": [str(pid)], "confirmSharedEmail": True}},
                }
                t1 = time.perf_counter()
                payload = client.post(svc_url, json=body, headers=headers).json()
                latencies.append(time.perf_counter() - t1)
                r = payload.get("data", {}) and payload["data"]["sendInvitation"]["results"]
                if not r or not r[0]["invitation"] or r[0]["userErrors"]:
                    single_errors += 1
            single_seconds = time.perf_counter() - t0
            single_watch.__exit__()
        per_single = single_seconds / len(single_ids)
        result.rows.append(
            item_row(
                backend,
                f"sendInvitation, {bulk_n} ids in one request (HTTP)",
                bulk_sent,
                bulk_sent / bulk_seconds,
                bulk_seconds,
                bulk_errors,
                f"{bulk_seconds / bulk_n * 1000:.3f} ms per patient",
                other_cpu=bulk_watch.other,
            )
        )
        result.rows.append(
            item_row(
                backend,
                "sendInvitation, one id per request (HTTP)",
                len(single_ids),
                1 / per_single,
                single_seconds,
                single_errors,
                f"{per_single * 1000:.2f} ms per patient; {bulk_n} would take {per_single * bulk_n:.1f} s",
                latencies,
                single_watch.other,
            )
        )
        result.figures["bulk_http_seconds"] = bulk_seconds
        result.figures["bulk_vs_one_by_one"] = (per_single * bulk_n) / bulk_seconds
        svc.stop()

        # 5. The mail worker: those messages to the SMTP sink, from a process of its own.
        log(f"[{backend}] mail worker: dispatching the queued invitations to the local SMTP server")
        with Watch() as mail_watch:
            mail = run_step(
                [*worker, "dispatch", "--database-url", url], env, 900, out / "worker.log"
            )
        mail_rate = mail["sent"] / mail["seconds"] if mail["seconds"] else 0.0
        result.figures["mail_per_second"] = mail_rate
        log(
            f"    sent {mail['sent']} in {mail['seconds']:.2f} s ({mail_rate:.0f}/s), failed {mail['failed']}, retried {mail['retried']}"
        )

        # 6. The same workflow below GraphQL, in-process, with the time spent in the database.
        other = plan["practices"][1]
        invitable2 = list(other["invitable"])
        random.Random(4).shuffle(invitable2)
        bulk2 = invitable2[: min(opts.bulk, len(invitable2) - singles_n)]
        single2 = invitable2[len(bulk2) : len(bulk2) + singles_n]
        ids_file = out / "invite-ids.json"
        write_json(ids_file, {"bulk": bulk2, "single": single2})
        log(
            f"[{backend}] send_invitations in-process: {len(bulk2)} ids at once, then {len(single2)} one by one"
        )
        inproc_watch = Watch().__enter__()
        inproc = run_step(
            [
                *worker,
                "invite",
                "--database-url",
                url,
                "--practice-id",
                str(other["id"]),
                "--staff-id",
                str(other["staff_id"]),
                "--ids-file",
                str(ids_file),
            ],
            env,
            900,
            out / "worker.log",
        )
        inproc_watch.__exit__()
        result.slow_statements = inproc.get("bulk_slowest", [])
        per_single_db = inproc["single_seconds"] / max(1, inproc["single_requested"])
        per_request = max(1, inproc["single_requested"])
        result.rows.append(
            item_row(
                backend,
                f"send_invitations, {len(bulk2)} ids at once (in-process)",
                inproc["bulk_sent"],
                inproc["bulk_sent"] / inproc["bulk_seconds"],
                inproc["bulk_seconds"],
                inproc["bulk_requested"] - inproc["bulk_sent"],
                f"in the database {inproc['bulk_db_seconds']:.3f} s, {inproc['bulk_statements']} statements",
                other_cpu=inproc_watch.other,
            )
        )
        result.rows.append(
            item_row(
                backend,
                "send_invitations, one id per call (in-process)",
                inproc["single_sent"],
                1 / per_single_db if per_single_db else 0.0,
                inproc["single_seconds"],
                inproc["single_requested"] - inproc["single_sent"],
                f"in the database {inproc['single_db_seconds'] / per_request * 1000:.2f} ms and"
                f" {inproc['single_statements'] / per_request:.0f} statements per patient",
                other_cpu=inproc_watch.other,
            )
        )
        result.figures["bulk_db_seconds"] = inproc["bulk_db_seconds"]
        result.figures["bulk_inprocess_seconds"] = inproc["bulk_seconds"]
        result.figures["bulk_vs_one_by_one_inprocess"] = (per_single_db * len(bulk2)) / inproc[
            "bulk_seconds"
        ]

        sink.stop()
        delivered = None
        for line in sink.log.read_text(errors="replace").splitlines():
            if line.startswith("SINKJSON "):
                delivered = json.loads(line[len("SINKJSON ") :])["messages"]
        result.rows.append(
            item_row(
                backend,
                "mail worker to local SMTP (aiosmtpd)",
                mail["sent"],
                mail_rate,
                mail["seconds"],
                mail["failed"] + mail["retried"],
                f"SMTP server received {delivered}; batches of {mail['batch_size']}",
                other_cpu=mail_watch.other,
            )
        )

    # Ratios.
    result.figures["throughput_vs_reference"] = svc_tp["rps"] / ref_tp["rps"]
    result.figures["one_client_p99_over_p50"] = alone["p99_us"] / max(1, alone["p50_us"])
    result.figures["p99_hashing_over_alone"] = beside["p99_us"] / max(1, alone["p99_us"])
    result.figures["two_workers_over_one"] = svc2_tp["rps"] / svc_tp["rps"]
    errors = sum(r["errors"] or 0 for r in result.rows)
    if errors:
        result.notes.append(
            f"{errors} errors in total (see the errors column and the logs in {out})"
        )
    return result


# --- output -------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: list[BackendResult]) -> str:
    header = [
        "backend",
        "scenario",
        "conns",
        "n",
        "per s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "total s",
        "errors",
        "other cpu",
        "note",
    ]
    lines = []
    for res in results:
        for r in res.rows:
            lines.append(
                [
                    r["backend"],
                    r["scenario"],
                    _fmt(r["conns"]),
                    _fmt(r["n"]),
                    _fmt(r["per_s"]),
                    _fmt(r["p50_ms"], 2),
                    _fmt(r["p90_ms"], 2),
                    _fmt(r["p99_ms"], 2),
                    _fmt(r["total_s"], 2),
                    _fmt(r["errors"]),
                    _fmt(r.get("other_cpu"), 2),
                    r["note"],
                ]
            )
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(header)
    ]
    numeric = {2, 3, 4, 5, 6, 7, 8, 9, 10}

    def row(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(widths[i]) if i in numeric else c.ljust(widths[i])
                for i, c in enumerate(cells)
            )
            + " |"
        )

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([row(header), sep, *(row(line) for line in lines)])


def verdict(value: float, target: float, higher_is_better: bool, strict: bool = False) -> str:
    ok = (
        (value > target if strict else value >= target)
        if higher_is_better
        else (value < target if strict else value <= target)
    )
    if ok:
        return "met"
    factor = target / value if higher_is_better else value / target
    return f"MISSED by {factor:.2f}x"


def ratio_line(res: BackendResult) -> str:
    f = res.figures
    if res.error:
        return f"{res.backend}: not measured ({res.error.splitlines()[0]})"
    parts = [
        f"throughput {f['throughput_vs_reference']:.3f}x reference [>= {TARGETS['throughput_vs_reference']}: {verdict(f['throughput_vs_reference'], TARGETS['throughput_vs_reference'], True)}]",
        f"1-client p99/p50 {f['one_client_p99_over_p50']:.2f} [<= {TARGETS['one_client_p99_over_p50']}: {verdict(f['one_client_p99_over_p50'], TARGETS['one_client_p99_over_p50'], False)}]",
        f"p99 beside hashing / alone {f['p99_hashing_over_alone']:.2f} [<= {TARGETS['p99_hashing_over_alone']}: {verdict(f['p99_hashing_over_alone'], TARGETS['p99_hashing_over_alone'], False)}]",
        f"bulk invite in DB {f['bulk_db_seconds']:.3f} s [< {TARGETS['bulk_db_seconds']}: {verdict(f['bulk_db_seconds'], TARGETS['bulk_db_seconds'], False, strict=True)}]",
        f"bulk vs one-by-one {f['bulk_vs_one_by_one']:.1f}x [>= {TARGETS['bulk_vs_one_by_one']:g}: {verdict(f['bulk_vs_one_by_one'], TARGETS['bulk_vs_one_by_one'], True)}]",
        f"mail {f['mail_per_second']:.0f} msg/s [>= {TARGETS['mail_per_second']:g}: {verdict(f['mail_per_second'], TARGETS['mail_per_second'], True)}]",
        f"2 workers / 1 {f['two_workers_over_one']:.2f}x [>= {TARGETS['two_workers_over_one']}: {verdict(f['two_workers_over_one'], TARGETS['two_workers_over_one'], True)}]",
    ]
    return f"{res.backend} ratios: " + " | ".join(parts)


def print_profile(res: BackendResult) -> None:
    prof = res.profile
    if not prof:
        return
    print(
        f"\n{res.backend}: where the service's CPU goes under page load (py-spy, {prof['samples']} samples; {prof['raw']})"
    )
    print("  by area (self time):")
    for area, share in prof["areas"]:
        print(f"    {share:6.1%}  {area}")
    print("  hottest functions (self time):")
    for frame, share in prof["self"][:12]:
        print(f"    {share:6.1%}  {frame}")


# --- main -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--backend", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small and fast smoke version (4,000 patients, 2 s phases)",
    )
    parser.add_argument(
        "--patients", type=int, help="patients over the 20 practices (default 100000; quick 4000)"
    )
    parser.add_argument(
        "--duration", type=float, help="seconds per measured load phase (default 10; quick 2)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="connections for the throughput phases (default 8)",
    )
    parser.add_argument(
        "--bulk", type=int, default=10_000, help="ids in the bulk invitation (default 10000)"
    )
    parser.add_argument(
        "--one-by-one",
        type=int,
        help="invitations sent one per request for the comparison (default 200; quick 20)",
    )
    parser.add_argument(
        "--latency-requests",
        type=int,
        help="requests in the one-client phases, the same ones in each (default 250; quick 20)",
    )
    parser.add_argument(
        "--loader",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile the service under page load with py-spy",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a database on 127.0.0.1 whose name contains 'bench'; it is dropped and recreated",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measured phase, wait up to SECONDS for other programs to go quiet",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="PORTAL_X=VALUE",
        help="extra setting for the service and its workers (repeatable), e.g. PORTAL_HASH_CONCURRENCY=1",
    )
    args = parser.parse_args(argv)
    loader = args.loader
    if loader == "auto":
        loader = "wrk" if wrk_available() else "python"
    elif loader == "wrk" and not wrk_available():
        parser.error("wrk is not installed (apt-get install wrk), use --loader python")
    extra = {}
    for item in args.service_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("PORTAL_"):
            parser.error(f"--service-env wants PORTAL_NAME=value, got {item!r}")
        extra[key] = value
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Options(
        backends=["postgres", "sqlite"] if args.backend == "both" else [args.backend],
        quick=args.quick,
        patients=args.patients or (4_000 if args.quick else 100_000),
        duration=args.duration or (2.0 if args.quick else 10.0),
        warmup=1.0 if args.quick else 3.0,
        connections=args.connections,
        bulk=args.bulk,
        one_by_one=args.one_by_one or (20 if args.quick else 200),
        latency_requests=args.latency_requests or (20 if args.quick else 250),
        loader=loader,
        profile=args.profile,
        postgres_url=args.postgres_url,
        service_env=extra,
        wait_quiet=args.wait_quiet,
        out=RESULTS / stamp,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    global _wait_quiet
    _wait_quiet = opts.wait_quiet
    if opts.patients < 1000:
        raise SystemExit("--patients must be at least 1000")
    started = time.perf_counter()
    # Earlier runs keep their figures and logs, not their (large) SQLite databases.
    for stale in RESULTS.glob("*/sqlite/portal_bench.sqlite3*"):
        stale.unlink(missing_ok=True)
    log(
        f"bench: backends {', '.join(opts.backends)}; {opts.patients} patients; {opts.duration:g} s per phase;"
        f" loader {opts.loader}; results in {opts.out.relative_to(ROOT)}"
    )
    results: list[BackendResult] = []
    for backend in opts.backends:
        try:
            results.append(bench_backend(backend, opts))
        except Exception as exc:  # report and go on with the other backend
            log(f"[{backend}] FAILED: {exc}")
            results.append(BackendResult(backend, error=str(exc) or type(exc).__name__))
    elapsed = time.perf_counter() - started

    print()
    print(
        f"Onboarding service benchmark: {opts.patients:,} patients / 20 practices; {opts.duration:g} s per load phase;"
        f" {opts.connections} connections for throughput; loader {opts.loader}; {os.cpu_count()} CPUs"
        + ("; QUICK smoke run: figures are not meaningful" if opts.quick else "")
    )
    print(table([r for r in results if not r.error]))
    print()
    for res in results:
        print(ratio_line(res))
    for res in results:
        for note in res.notes:
            print(f"note ({res.backend}): {note}")
        busy = [r for r in res.rows if (r.get("other_cpu") or 0) > 0.2]
        if busy:
            print(
                f"WARNING ({res.backend}): other programs on this machine used up to"
                f" {max(r['other_cpu'] for r in busy):.2f} cores during {len(busy)} phase(s)"
                " (column 'other cpu'); those figures understate the service. Re-run on a quiet"
                " machine or with --wait-quiet."
            )
        if res.slow_statements:
            print(f"{res.backend}: slowest statements of the in-process bulk invitation:")
            for seconds, sql in res.slow_statements:
                print(f"    {seconds * 1000:8.1f} ms  {sql}")
        print_profile(res)
    print(f"\n(run took {elapsed:.0f} s; details in {opts.out.relative_to(ROOT)})")
    write_json(
        opts.out / "results.json",
        {
            "options": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(opts).items()
                if k != "service_env"
            }
            | {"service_env": opts.service_env},
            "results": [vars(r) for r in results],
            "seconds": elapsed,
        },
    )
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
