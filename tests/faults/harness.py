"""Real processes and real faults for the mail worker: a throwaway database (PostgreSQL:
the test database's own name plus a suffix; SQLite: a file in the test's directory),
``portal mail-worker`` subprocesses, an aiosmtpd server that counts what it accepted per
recipient (optionally slowly), and ``pg_terminate_backend`` aimed at that database only."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import sqlite3
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
import orjson
from aiosmtpd.controller import Controller

from core.clock import utcnow
from mail import compose
from models import Patient, Practice
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


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite://")


def _sqlite(url: str) -> sqlite3.Connection:
    return sqlite3.connect(url[len("sqlite://") :], timeout=30)


@dataclass
class CountingSmtp:
    """Counts accepted messages per recipient; ``delay`` seconds before each 250 makes a
    slow server. A message counts when the server answers 250 to its DATA, or, with
    ``queued_before_reply``, as soon as its data is in: a server that has queued the
    message before it answers, the worst case for a client that dies waiting for the
    250 (RFC 1047): the message is delivered though its sender never heard so."""

    delay: float = 0.0
    port: int = 0
    queued_before_reply: bool = False
    accepted: Counter[str] = field(default_factory=Counter)
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.queued_before_reply:
            self._count(envelope)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.queued_before_reply:
            self._count(envelope)
        return "250 Message accepted"

    def _count(self, envelope: Any) -> None:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.accepted[rcpt.lower()] += 1
            self.messages.append(email.message_from_bytes(envelope.content))

    def total(self) -> int:
        with self.lock:
            return sum(self.accepted.values())

    def lost_and_duplicated(self, expected: list[str]) -> tuple[int, int]:
        with self.lock:
            lost = sum(1 for a in expected if self.accepted[a] == 0)
            duplicated = sum(max(0, n - 1) for n in self.accepted.values())
        return lost, duplicated


class SmtpServer:
    def __init__(self, delay: float = 0.0, *, queued_before_reply: bool = False) -> None:
        self.port = free_port()
        self.handler = CountingSmtp(delay, self.port, queued_before_reply)
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


def _reminder_params() -> str:
    """A username reminder's variables as the service queues them (compose's own)."""
    practice = Practice(id=1, name="Maple Family Practice", time_zone="America/Toronto")
    patient = Patient(id=1, practice_id=1, first_name="Avery", preferred_language="en")
    draft = compose.username_reminder(practice, patient, username="aq")
    return orjson.dumps(draft.params).decode()


async def enqueue(url: str, count: int, start: int = 0, *, channel: str = "email") -> list[str]:
    """Queue ``count`` username reminders straight into the outbox (no link rows: the
    delivery callback has nothing to write, so only the outbox is under test). Texts
    (``channel="sms"``) go to E.164 numbers; the answer is the addresses or numbers."""
    if channel == "sms":
        addresses = [f"+1617555{n:04d}" for n in range(start, start + count)]
    else:
        addresses = [f"patient{n}@example.test" for n in range(start, start + count)]
    params = _reminder_params()
    now = utcnow()
    rows = [(a, params, channel, "pending", 0, now, now) for a in addresses]
    columns = (
        "practice_id, patient_id, link_id, kind, to_addr, params, channel, status, attempts,"
        " next_attempt_at, created_at"
    )
    if is_sqlite(url):
        with _sqlite(url) as conn:
            conn.executemany(
                f"INSERT INTO outbox_message ({columns})"  # noqa: S608
                " VALUES (1, NULL, NULL, 'username_reminder', ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return addresses
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.executemany(
            f"INSERT INTO outbox_message ({columns})"  # noqa: S608
            " VALUES (1, NULL, NULL, 'username_reminder', $1, $2::jsonb, $3, $4, $5, $6, $7)",
            rows,
        )
    finally:
        await conn.close()
    return addresses


async def outbox_counts(url: str) -> dict[str, int]:
    sql = "SELECT status, count(*) AS n FROM outbox_message GROUP BY status"
    if is_sqlite(url):
        with _sqlite(url) as conn:
            return {status: n for status, n in conn.execute(sql)}
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await conn.fetch(sql)
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
