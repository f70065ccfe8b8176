"""Hostile traffic against a real `portal serve` (issue 10): how fast a fragment chain is
refused, whether a cheap request beside it waits, and how many connections a slow
client holds, for how long, before they are cut.

    .venv/bin/python -m bench.hostile [--chain 40] [--slow 300] [--hold 30]

Runs on 127.0.0.1 only (the slow client binds 127.0.0.5), against SQLite in a temporary
folder, with the service's default limits unless PORTAL_* variables say otherwise.
Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(port: int, body: bytes | None, path: str = "/graphql", source: str = "127.0.0.1") -> tuple[bytes, float]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0)) as sock:
        if body is None:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
        else:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), time.perf_counter() - started


def fragment_chain(n: int) -> str:
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ __typename ...F{i + 1} ...F{i + 1} }}" for i in range(n)]
    parts.append(f"fragment F{n} on Query {{ __typename }}")
    return " ".join(parts)


def chain_figures(port: int, n: int, samples: int = 20) -> None:
    body = json.dumps({"query": fragment_chain(n)}).encode()
    cheap = json.dumps({"query": "{ __typename }"}).encode()
    refuse, beside = [], []
    for _ in range(samples):
        result: dict[str, float] = {}

        def side(into: dict[str, float] = result) -> None:
            into["cheap"] = request(port, cheap)[1]

        thread = threading.Thread(target=side)
        thread.start()
        answer, seconds = request(port, body)
        thread.join(timeout=60)
        assert b'"errors"' in answer, answer[:300]
        refuse.append(seconds)
        beside.append(result["cheap"])
    alone = [request(port, cheap)[1] for _ in range(samples)]
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"  # noqa: E731
    print(f"fragment chain n={n} ({len(body)} bytes): refused in {ms(refuse)}")
    print(f"cheap query sent alongside: {ms(beside)}; alone: {ms(alone)}")
    print("  answer:", answer.split(b"\r\n\r\n", 1)[1][:160].decode())


def slow_client(port: int, count: int, hold: float) -> None:
    """`count` connections from one address, each sending a header byte every second."""
    socks: list[socket.socket] = []
    refused_at_once = 0
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.5", 0))
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: b\r\n")
            socks.append(sock)
        except OSError:
            refused_at_once += 1
            sock.close()
    started = time.monotonic()
    time.sleep(0.5)
    alive = {}
    for s in socks:
        s.setblocking(False)
        try:
            alive[s] = s.recv(4096) != b""
        except BlockingIOError:
            alive[s] = True
        except OSError:
            alive[s] = False
    kept = sum(alive.values())
    refused_at_once += len(socks) - kept
    open_at: list[tuple[float, int]] = []
    closed_after: list[float] = []
    while time.monotonic() - started < hold and any(alive.values()):
        for s, ok in list(alive.items()):
            if not ok:
                continue
            try:
                s.send(b"X")
                data = s.recv(4096)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    alive[s] = False
                    closed_after.append(time.monotonic() - started)
            except BlockingIOError:
                pass
            except OSError:
                alive[s] = False
                closed_after.append(time.monotonic() - started)
        open_at.append((time.monotonic() - started, sum(alive.values())))
        health = request(port, None, "/healthz", source="127.0.0.6")[0]
        assert b"200 OK" in health, health[:200]
        time.sleep(1)
    held = closed_after
    print(
        f"slow client: opened {count} connections from one address; "
        f"{refused_at_once} closed at once by the connection caps, "
        f"{kept} held, cut after {min(held, default=0):.1f}-{max(held, default=0):.1f} s "
        "(counted from the first connection), "
        f"{sum(alive.values())} still open after {hold:.0f} s; "
        "/healthz from another address answered 200 every second throughout"
    )
    for s in socks:
        s.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", type=int, default=40)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--hold", type=float, default=30)
    args = parser.parse_args()
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="portal-hostile-"))
    env = {
        **os.environ,
        "PORTAL_DATABASE_URL": f"sqlite://{tmp}/bench.sqlite3",
        "PORTAL_MAIL_DIR": str(tmp / "mail"),
    }
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", "import portal_cli; portal_cli.main()", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                if b"200 OK" in request(port, None, "/healthz")[0]:
                    break
            time.sleep(0.2)
        for n in dict.fromkeys((args.chain, 20)):  # n=20 passes the nesting cap: the cost refuses it
            chain_figures(port, n)
        slow_client(port, args.slow, args.hold)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
