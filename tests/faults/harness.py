"""Real processes and real faults for the mail worker: a throwaway PostgreSQL database
of the test database's own name plus a suffix, ``portal mail-worker`` subprocesses, an
aiosmtpd server that counts what it accepted per recipient (optionally slowly), and
``pg_terminate_backend`` aimed at that database only."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiosmtpd.controller import Controller

from tests.conftest import POSTGRES_URL, free_port

ROOT = Path(__file__).resolve().parents[2]


def database_url(suffix: str) -> str:
    assert POSTGRES_URL
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path=parts.path + "_" + suffix))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def recreate_database(url: str) -> None:
    assert POSTGRES_URL
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgres://", "postgresql://", 1))
    try:
        name = database_name(url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def drop_database(url: str) -> None:
    assert POSTGRES_URL
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class CountingSmtp:
    """Counts accepted messages per recipient; ``delay`` seconds before each 250 makes a
    slow server. A message counts when the server answers 250 to its DATA."""

    delay: float = 0.0
    port: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.accepted[rcpt.lower()] += 1
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"

    def total(self) -> int:
        with self.lock:
            return sum(self.accepted.values())

    def lost_and_duplicated(self, expected: list[str]) -> tuple[int, int]:
        with self.lock:
            lost = sum(1 for a in expected if self.accepted[a] == 0)
            duplicated = sum(max(0, n - 1) for n in self.accepted.values())
        return lost, duplicated


class SmtpServer:
    def __init__(self, delay: float = 0.0) -> None:
        self.port = free_port()
        self.handler = CountingSmtp(delay, self.port)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> CountingSmtp:
        self.controller.start()
        return self.handler

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def worker_env(url: str, smtp_port: int, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        {
            "PORTAL_ENV": "development",
            "PORTAL_DATABASE_URL": url,
            "PORTAL_MAIL_BACKEND": "smtp",
            "PORTAL_SMTP_HOST": "127.0.0.1",
            "PORTAL_SMTP_PORT": str(smtp_port),
            "PORTAL_MAIL_POLL_SECONDS": "0.2",
            "PORTAL_REMINDER_BEFORE_EXPIRY_MINUTES": "0",
        }
    )
    env.update({f"PORTAL_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "portal_cli", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


class Worker:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portal_cli", "mail-worker"],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> float:
        """SIGTERM; returns how long the worker took to exit."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return time.monotonic() - start

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


async def enqueue(url: str, count: int, start: int = 0) -> list[str]:
    """Queue ``count`` username reminders straight into the outbox (no link rows: the
    delivery callback has nothing to write, so only the outbox is under test)."""
    addresses = [f"patient{n}@example.test" for n in range(start, start + count)]
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.executemany(
            "INSERT INTO outbox_message (practice_id, patient_id, link_id, kind, to_addr, params,"
            " status, attempts, next_attempt_at, created_at)"
            " VALUES (1, NULL, NULL, 'username_reminder', $1,"
            ' \'{"practice_name": "Maple", "first_name": "Avery", "username": "aq"}\','
            " 'pending', 0, now(), now())",
            [(a,) for a in addresses],
        )
    finally:
        await conn.close()
    return addresses


async def outbox_counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM outbox_message GROUP BY status")
    finally:
        await conn.close()
    return {r["status"]: r["n"] for r in rows}


async def terminate_backends(url: str) -> int:
    """pg_terminate_backend for every other session of this test's own database."""
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return sum(1 for r in rows if r[0])


async def wait_for(predicate: Any, seconds: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step)
    return False
