"""Load generators, each in its own process: wrk with bench/replay.lua when ``wrk`` is on
the PATH (``apt-get install wrk``), otherwise this module's asyncio loader
(``python -m bench.load``): keep-alive HTTP/1.1 connections over raw asyncio streams,
closed loop, one request in flight per connection, same request file and same JSON
summary as the Lua script.

A summary has requests, duration, latency percentiles (p50/p90/p99, microseconds),
non-200 answers and answers carrying GraphQL ``errors`` or ``userErrors``."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import LOOPBACK, ROOT

LUA = ROOT / "bench" / "replay.lua"


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


@dataclass
class LoadJob:
    """One load generator process; ``result()`` waits for it and parses its summary;
    ``interrupt()`` asks it to stop now (SIGINT: it still prints its summary)."""

    name: str
    proc: subprocess.Popen[str]
    deadline: float

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def result(self) -> dict[str, Any]:
        timer = threading.Timer(max(5.0, self.deadline - time.monotonic()), self.proc.kill)
        timer.start()
        lines: list[str] = []
        try:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            for line in self.proc.stdout:
                lines.append(line)
                if line.startswith("WRKDONE"):
                    self.interrupt()
            self.proc.wait()
            err = self.proc.stderr.read()
        finally:
            timer.cancel()
        out = "".join(lines)
        for line in out.splitlines():
            if line.startswith("WRKJSON "):
                summary: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
                summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
                summary["errors"] = (
                    summary["status_errors"]
                    + summary["graphql_errors"]
                    + summary["socket_errors"]
                    + summary["timeouts"]
                )
                return summary
        raise RuntimeError(f"load generator {self.name} printed no summary:\n{out}\n{err}")


def start_load(
    name: str,
    url: str,
    requests_file: Path,
    *,
    connections: int,
    duration: float,
    loader: str,
    count: int | None = None,
) -> LoadJob:
    """Load for ``duration`` seconds or, with ``count`` (one connection), for exactly that
    many requests, the first ``count`` of the file (then ``duration`` is only a cap)."""
    if urlsplit(url).hostname not in LOOPBACK:
        raise SystemExit(f"refusing to load {url}: loopback only")
    seconds = max(1, round(duration))
    if loader == "wrk":
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            url,
            "--",
            str(requests_file),
            *([str(count)] if count else []),
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "bench.load",
            "--url",
            url,
            "--requests",
            str(requests_file),
            "--connections",
            str(connections),
            "--duration",
            str(seconds),
            *(["--count", str(count)] if count else []),
        ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return LoadJob(name, proc, time.monotonic() + seconds + 60)


# --- the asyncio loader ------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        return status, await reader.readexactly(length)
    if not chunked:
        raise RuntimeError("response without length")
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def _load(
    url: str, lines: list[str], connections: int, duration: float, count: int | None
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    raw: list[tuple[bytes, bool]] = []
    for line in lines:
        token, _, rest = line.partition("\t")
        flag, _, body = rest.partition("\t")
        data = body.encode()
        close = "Connection: close\r\n" if flag == "c" else ""
        raw.append(
            (
                (
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
                    f"{close}Content-Length: {len(data)}\r\n\r\n"
                ).encode()
                + data,
                flag == "c",
            )
        )
    latencies: list[float] = []
    counts = {"status_errors": 0, "graphql_errors": 0, "socket_errors": 0, "timeouts": 0}
    started = time.perf_counter()
    stop_at = started + duration
    interrupted = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)

    async def client(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        try:
            while time.perf_counter() < stop_at and not interrupted.is_set():
                if count and len(latencies) >= count:
                    return
                request, close = raw[i % len(raw)]
                i += 1
                if writer.is_closing():
                    reader, writer = await asyncio.open_connection(host, port)
                t0 = time.perf_counter()
                writer.write(request)
                try:
                    status, body = await asyncio.wait_for(_read_response(reader), 30)
                except TimeoutError:
                    counts["timeouts"] += 1
                    return
                except (OSError, asyncio.IncompleteReadError):
                    counts["socket_errors"] += 1
                    return
                if time.perf_counter() > stop_at:
                    return  # in flight at the end: not counted, as wrk does
                if close:
                    writer.close()
                    await writer.wait_closed()
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    counts["status_errors"] += 1
                elif b'"errors"' in body or b'"userErrors":[{' in body:
                    counts["graphql_errors"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(n * 7919) for n in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "p50_us": int(_percentile(latencies, 50) * 1e6),
        "p90_us": int(_percentile(latencies, 90) * 1e6),
        "p99_us": int(_percentile(latencies, 99) * 1e6),
        "max_us": int((latencies[-1] if latencies else 0) * 1e6),
        "mean_us": (sum(latencies) / len(latencies) * 1e6) if latencies else 0.0,
        **counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="asyncio HTTP load generator")
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--count", type=int, help="stop after this many requests")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in LOOPBACK:
        raise SystemExit("loopback only")
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    lines = args.requests.read_text().splitlines()
    summary = runner(_load(args.url, lines, args.connections, args.duration, args.count))
    print("WRKJSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
