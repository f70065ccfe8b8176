"""Processes the benchmark starts and stops: the real service (``portal serve``), the
reference (uvicorn bench.reference:app), the SMTP sink, and helper processes. Each is
stopped by its own process id (and its process group, which holds uvicorn's workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT

# The service's cursor secret for every benchmark run, so the references and the request
# files (deep pages) seal cursors the service opens. Never a production key.
BENCH_SECRET_KEY = "bench-only-secret-key-not-for-production-0123456789"

# No proxy, ever: every request goes straight to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def base_env() -> dict[str, str]:
    """The caller's environment without PORTAL_* or proxy settings, so a run depends only
    on what the benchmark sets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PORTAL_")
        and k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = str(ROOT)
    return env


def service_env(database_url: str, smtp_port: int, extra: dict[str, str]) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            # Production settings: JSON logs, no GraphiQL or introspection, SMTP mail sent
            # by a separate mail worker (the benchmark's own dispatch phase).
            "PORTAL_ENV": "production",
            "PORTAL_DATABASE_URL": database_url,
            "PORTAL_MAIL_BACKEND": "smtp",
            "PORTAL_SMTP_HOST": "127.0.0.1",
            "PORTAL_SMTP_PORT": str(smtp_port),
            "PORTAL_MAIL_DISPATCH_IN_SERVER": "false",
            # Never opened: the links only travel inside the messages to the SMTP sink.
            "PORTAL_LINK_BASE_URL": "https://portal.example.invalid/activate",
            # One sendInvitation request carries 10,000 ids (about 90 kB of JSON).
            "PORTAL_MAX_BODY_BYTES": "1000000",
            "PORTAL_SECRET_KEY": BENCH_SECRET_KEY,
            # Local SMTP without TLS and no SMS provider: the relaxed production rules.
            "PORTAL_ALLOW_INSECURE_DEFAULTS": "true",
        }
    )
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)  # the group this process leads
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(
    name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    popen = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    handle.close()
    return Proc(name, popen, log)


def wait_http(proc: Proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            with _OPENER.open(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout} s:\n{proc.tail()}")


def wait_port(proc: Proc, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on {port}:\n{proc.tail()}")


def start_service(
    env: dict[str, str], port: int, workers: int, log: Path, cwd: Path = ROOT
) -> Proc:
    """``cwd``: another checkout's service (a before/after comparison in one run); the
    caller sets PYTHONPATH in ``env`` to the same tree."""
    proc = start(
        f"service ({workers} worker{'s' if workers > 1 else ''})",
        [
            sys.executable,
            "-m",
            "portal_cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env,
        log,
        cwd,
    )
    wait_http(proc, f"http://127.0.0.1:{port}/healthz", timeout=90)
    return proc


def start_reference(database_url: str, port: int, log: Path) -> Proc:
    env = base_env()
    env["BENCH_REF_DATABASE_URL"] = database_url
    env["BENCH_REF_SECRET_KEY"] = BENCH_SECRET_KEY
    proc = start(
        "reference",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.reference:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env,
        log,
    )
    wait_http(proc, f"http://127.0.0.1:{port}/healthz")
    return proc


def start_smtp_sink(port: int, log: Path) -> Proc:
    proc = start(
        "smtp sink",
        [sys.executable, "-m", "bench.smtp_sink", "--port", str(port)],
        base_env(),
        log,
    )
    wait_port(proc, port)
    return proc
