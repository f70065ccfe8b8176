"""What recording each message costs the mail worker, against sending without recording,
in the same run (issue 12: per-message acknowledgement and the one-at-a-time hand-over).

``python -m bench.mail_ack [--messages N] [--rounds R] [--connections C]
[--postgres-url URL]`` queues N username reminders in a throwaway outbox (SQLite in a
temporary directory; PostgreSQL when a URL naming a database containing ``bench`` is
given: it is dropped and created) and sends them to an aiosmtpd sink running in a process
of its own, in three ways, alternating, R rounds each:

- ``reference``: the same rows read in one query, rendered and sent by aiosmtplib over
  the same C connections (split by recipient as the dispatcher does), nothing recorded;
- ``dispatcher``: ``mail.dispatcher.Dispatcher.drain()`` as shipped: each message
  recorded in its own commit, DATA and the commit one at a time per worker;
- ``free lanes``: the same dispatcher with the hand-over turn switched off (each
  connection records on its own, commits shared when they coincide): the design before
  the turn, which let a killed worker re-send one message per connection.

Figures: median messages/s, and CPU per message: this process (the worker, since the sink
runs elsewhere) plus, on PostgreSQL, the database backends serving it (``/proc``). The
ratios are against the reference of the same run."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtplib

from core.settings import Settings
from mail import compose, outbox
from mail.dispatcher import Dispatcher, _outgoing
from mail.transports import build_message
from models import OutboxMessage, OutboxStatus, Patient, Practice
from models.database import connect, disconnect, migrate
from onboarding.delivery import record_delivery_outcome
from tests.conftest import free_port

TICKS = os.sysconf("SC_CLK_TCK")


class NoTurn:
    """Stands in for the dispatcher's hand-over lock: every lane may go at once."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def backend_pids() -> list[int]:
    from tortoise import connections

    conn = connections.get("default")
    if conn.capabilities.dialect != "postgres":
        return []
    rows = await conn.execute_query_dict(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    )
    return [r["pid"] for r in rows]


def cpu_seconds(pids: list[int]) -> float:
    total = time.process_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


async def queue(practice: Practice, n: int) -> None:
    await OutboxMessage.all().delete()
    patient = Patient(id=1, practice_id=practice.id, first_name="Avery", preferred_language="en")
    draft = compose.username_reminder(practice, patient, username="avery.q")
    await outbox.enqueue(
        [
            outbox.message(
                practice_id=practice.id,
                patient_id=None,
                to_addr=f"patient{i}@example.test",
                draft=draft,
            )
            for i in range(n)
        ]
    )


async def reference(settings: Settings) -> int:
    rows = await OutboxMessage.filter(status=OutboxStatus.PENDING).order_by("id")
    lanes: list[list[OutboxMessage]] = [[] for _ in range(settings.mail_connections)]
    for row in rows:
        lanes[zlib.crc32(row.to_addr.casefold().encode()) % len(lanes)].append(row)

    async def lane(chunk: list[OutboxMessage]) -> None:
        client = aiosmtplib.SMTP(hostname=settings.smtp_host, port=settings.smtp_port)
        await client.connect()
        for row in chunk:
            data = build_message(settings.mail_from, _outgoing(row))
            await client.sendmail(settings.mail_from, [row.to_addr], data)
        await client.quit()

    await asyncio.gather(*(lane(c) for c in lanes if c))
    return len(rows)


async def dispatch(settings: Settings, *, turn: bool) -> int:
    dispatcher = Dispatcher(settings, on_outcome=record_delivery_outcome)
    if not turn:
        dispatcher._turn = NoTurn()  # type: ignore[assignment]
    return (await dispatcher.drain()).sent


async def run(args: argparse.Namespace, port: int) -> None:
    tmp = tempfile.TemporaryDirectory()
    url = args.postgres_url or f"sqlite://{tmp.name}/mail_ack.sqlite3"
    if args.postgres_url:
        assert "bench" in args.postgres_url.rsplit("/", 1)[1], "the database name needs 'bench'"
        import asyncpg

        admin_url, name = args.postgres_url.rsplit("/", 1)
        admin = await asyncpg.connect(
            admin_url.replace("postgres://", "postgresql://") + "/postgres"
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        mail_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        mail_connections=args.connections,
    )
    await asyncio.sleep(1.0)  # the sink's start
    await migrate(url)
    await connect(url)
    try:
        practice = await Practice.create(name="Maple Family Practice")
        pids = await backend_pids()
        modes: dict[str, Callable[[], Awaitable[int]]] = {
            "reference": lambda: reference(settings),
            "dispatcher": lambda: dispatch(settings, turn=True),
            "free lanes": lambda: dispatch(settings, turn=False),
        }
        rates: dict[str, list[float]] = {m: [] for m in modes}
        cpus: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(args.rounds):
            order = list(modes)
            order = order[r % len(order) :] + order[: r % len(order)]
            for mode in order:
                await queue(practice, args.messages)
                pids = pids or await backend_pids()
                cpu0, t0 = cpu_seconds(pids), time.perf_counter()
                sent = await modes[mode]()
                seconds, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
                assert sent == args.messages, (mode, sent)
                rates[mode].append(sent / seconds)
                cpus[mode].append(cpu / sent * 1e6)
                print(
                    f"round {r + 1} {mode:>10}: {sent / seconds:7.0f} msg/s, {cpu / sent * 1e6:6.0f} µs CPU/msg",
                    flush=True,
                )
        base_rate = statistics.median(rates["reference"])
        base_cpu = statistics.median(cpus["reference"])
        backend = "postgres" if args.postgres_url else "sqlite"
        print(
            f"\n{backend}, {args.messages} messages, {args.connections} connections, median of {args.rounds}:"
        )
        print(f"{'mode':>10}  {'msg/s':>7}  {'vs ref':>6}  {'µs CPU/msg':>10}  {'vs ref':>6}")
        for mode in modes:
            rate, cpu = statistics.median(rates[mode]), statistics.median(cpus[mode])
            print(
                f"{mode:>10}  {rate:7.0f}  {rate / base_rate:6.2f}  {cpu:10.0f}  {cpu / base_cpu:6.2f}"
            )
    finally:
        await disconnect()
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--postgres-url")
    args: Any = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.smtp_sink", "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        asyncio.run(run(args, port))
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
