"""Mail workers under real faults (issue 12, items 1 and 2), with real `portal mail-worker`
processes, a real SMTP server and PostgreSQL: terminated database backends, kill -9 and
SIGTERM in the middle of a batch, and an SMTP server slower than the lease. Each test
counts, per recipient, what the SMTP server (and, for texts, the Twilio stand-in)
accepted: nothing may be lost, and at most one message of a killed worker may arrive
twice, however many connections it had (zero otherwise).

The kill -9 test runs on both databases (one worker at a time); the others need
PostgreSQL (several processes share the queue through SKIP LOCKED, or its backends are
terminated). Each test prints a ``FAULT`` line with its figures; `pytest tests/faults -s
-q` shows them."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import BACKEND, free_port
from tests.faults.harness import (
    SmtpServer,
    Worker,
    database_url,
    drop_database,
    enqueue,
    migrate,
    outbox_counts,
    recreate_database,
    terminate_backends,
    wait_for,
    worker_env,
)
from tests.twilio_fake import ACCOUNT_SID, AUTH_TOKEN, FROM, Running, TwilioFake

postgres_only = pytest.mark.skipif(BACKEND != "postgres", reason="needs PostgreSQL")


@pytest.fixture
async def fault_db(tmp_path: Path) -> AsyncIterator[str]:
    if BACKEND != "postgres":
        yield f"sqlite://{tmp_path}/faults.sqlite3"
        return
    url = database_url("faults")
    await recreate_database(url)
    yield url
    await drop_database(url)


def all_sent(url: str, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await outbox_counts(url)).get("sent", 0) == n

    return check


@postgres_only
async def test_workers_heal_after_their_database_backends_are_terminated(
    fault_db: str, tmp_path: Path
) -> None:
    """Why 1: one pg_terminate_backend left a worker logging `connection is closed` on
    every poll, forever, while staying alive."""
    with SmtpServer(delay=0.02) as smtp:
        env = worker_env(fault_db, smtp.port, mail_connections=2)
        migrate(env)
        addresses = await enqueue(fault_db, 600)
        workers = [Worker(env, tmp_path / f"w{i}.log") for i in range(3)]
        terminations = 0
        try:
            # once the workers are up and sending (a fault during start-up is a failed
            # start: the worker exits non-zero and its supervisor starts it again)
            assert await wait_for(lambda: _at_least(smtp, 30), 120, step=0.05)
            # when backends are terminated at random moments while mail flows
            rng = random.Random(12)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and smtp.total() < len(addresses):
                await asyncio.sleep(rng.uniform(0.01, 0.15))
                terminations += await terminate_backends(fault_db)
            delivered = await wait_for(all_sent(fault_db, len(addresses)), 60)
            # then every worker is still running and every message arrived once
            assert all(w.proc.poll() is None for w in workers), [
                w.output()[-2000:] for w in workers
            ]
            lost, duplicated = smtp.lost_and_duplicated(addresses)
            print(
                f"\nFAULT heal: messages={len(addresses)} terminated_backends={terminations}"
                f" lost={lost} duplicated={duplicated}"
            )
            assert delivered
            assert terminations >= 5
            assert lost == 0
            assert duplicated == 0

            # and each worker on its own still sends (a broken one stayed alive, silent):
            # its backends are terminated while it idles, then one message is queued
            recoveries = []
            for n, alone in enumerate(workers):
                others = [w for w in workers if w is not alone]
                for w in others:
                    w.proc.send_signal(signal.SIGSTOP)
                try:
                    await terminate_backends(fault_db)
                    start = time.monotonic()
                    [address] = await enqueue(fault_db, 1, start=10_000 + n)
                    sent = await wait_for(all_sent(fault_db, len(addresses) + n + 1), 30, step=0.05)
                    recoveries.append(time.monotonic() - start)
                finally:
                    for w in others:
                        w.proc.send_signal(signal.SIGCONT)
                assert sent, f"worker {n} no longer sends:\n" + alone.output()[-3000:]
                assert smtp.accepted[address] == 1
            print(
                "FAULT heal: recovery_after_idle_termination="
                + ", ".join(f"{r:.2f}s" for r in recoveries)
            )
        finally:
            for w in workers:
                w.stop()


@postgres_only
async def test_worker_exits_non_zero_when_the_database_stays_away(
    fault_db: str, tmp_path: Path
) -> None:
    with SmtpServer() as smtp:
        env = worker_env(fault_db, smtp.port, mail_worker_max_db_failures=4)
        migrate(env)
        worker = Worker(env, tmp_path / "w.log")
        try:
            await enqueue(fault_db, 3)
            assert await wait_for(all_sent(fault_db, 3), 30)
            # when its database disappears for good
            start = time.monotonic()
            await drop_database(fault_db)
            # then the worker exits with status 3 instead of polling forever
            for _ in range(300):
                if worker.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            took = time.monotonic() - start
            print(f"\nFAULT give-up: exit_code={worker.proc.returncode} after={took:.1f}s")
            assert worker.proc.returncode == 3, worker.output()[-3000:]
            assert "4 consecutive database failures" in worker.output()
        finally:
            worker.stop()
            await recreate_database(fault_db)


@pytest.mark.parametrize(
    ("connections", "texts"), [(1, 0), (4, 0), (4, 150)], ids=["1conn", "4conn", "4conn-texts"]
)
async def test_kill_9_mid_batch_loses_nothing_and_repeats_at_most_one_message(
    fault_db: str, tmp_path: Path, connections: int, texts: int
) -> None:
    """Why 2: a batch was recorded only once all of it was sent, so kill -9 re-sent the
    120 messages already delivered. Then each of a worker's SMTP connections could hold
    a message between the server's acceptance and its commit, so a killed worker with
    four connections re-sent up to four. Now a worker hands over one message at a time
    (mail.transports.HandOver): whatever its connections, and for texts too, at most one
    message of a killed worker goes twice.

    The servers here keep a message from the moment its data is in and answer 30 ms
    later, so at the kill every busy connection holds a message its worker never heard
    was accepted: the worst case for the sender."""
    twilio = TwilioFake(free_port(), delay=0.03)
    with SmtpServer(delay=0.03, queued_before_reply=True) as smtp, Running(twilio):
        env = worker_env(
            fault_db,
            smtp.port,
            mail_connections=connections,
            # Timeouts well above the servers' 30 ms even on a loaded machine: a reply
            # that times out is a retry that may deliver twice (another, rarer way to a
            # duplicate, not the one under test). The lease is the least the settings allow.
            smtp_timeout_seconds=2,
            mail_lease_seconds=14,
            sms_backend="twilio",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_from=FROM,
            twilio_api_base=twilio.base,
            twilio_timeout_seconds=2,
        )
        migrate(env)
        emails = await enqueue(fault_db, 300 - texts)
        numbers = await enqueue(fault_db, texts, channel="sms") if texts else []

        def accepted() -> int:
            return smtp.total() + len(twilio.received)

        async def at_least(n: int) -> bool:
            return accepted() >= n

        first = Worker(env, tmp_path / "first.log")
        second = None
        try:
            # when the worker is killed outright in the middle of its batch
            assert await wait_for(lambda: at_least(100), 60, step=0.01), first.output()[-3000:]
            first.kill()
            at_kill = accepted()
            # and another worker takes over once the lease has ended
            killed_at = time.monotonic()
            second = Worker(env, tmp_path / "second.log")
            assert await wait_for(all_sent(fault_db, 300), 60), second.output()[-3000:]
            recovered = time.monotonic() - killed_at
            # then nothing is lost and at most one message arrived twice
            lost, duplicated = smtp.lost_and_duplicated(emails)
            texted = Counter(m["To"] for m in twilio.received)
            lost += sum(1 for n in numbers if texted[n] == 0)
            duplicated += sum(max(0, k - 1) for k in texted.values())
            retried = sum(w.output().count("mail.delivery_failed") for w in (first, second))
            print(
                f"\nFAULT kill-9: db={BACKEND} messages=300 texts={texts}"
                f" accepted_before_kill={at_kill} connections={connections} lost={lost}"
                f" duplicated={duplicated} transient_failures={retried}"
                f" all_sent_after={recovered:.1f}s (lease 14s)"
            )
            assert 0 < at_kill < 300
            assert lost == 0
            assert duplicated <= 1
            if texts:
                assert 0 < len(twilio.received) and 0 < smtp.total()
        finally:
            first.stop()
            if second:
                second.stop()


async def _at_least(smtp, n: int) -> bool:  # type: ignore[no-untyped-def]
    return smtp.total() >= n


@postgres_only
async def test_sigterm_mid_batch_finishes_the_message_in_hand_and_returns_the_rest(
    fault_db: str, tmp_path: Path
) -> None:
    """Why 2: SIGTERM was not handled; the worker died like kill -9 and 192 were re-sent."""
    with SmtpServer(delay=0.03) as smtp:
        env = worker_env(fault_db, smtp.port, mail_connections=4)
        migrate(env)
        addresses = await enqueue(fault_db, 300)
        first = Worker(env, tmp_path / "first.log")
        second = None
        try:
            assert await wait_for(lambda: _at_least(smtp, 100), 60, step=0.01)
            # when the worker is asked to stop in the middle of its batch
            took = first.terminate()
            at_stop = smtp.total()
            counts = await outbox_counts(fault_db)
            # then it stopped promptly and cleanly, everything it sent is recorded
            assert first.proc.returncode == 0, first.output()[-3000:]
            assert counts.get("sent", 0) == at_stop
            # and the rest is due at once (the default 5-minute lease is not waited for)
            second = Worker(env, tmp_path / "second.log")
            assert await wait_for(all_sent(fault_db, len(addresses)), 30)
            lost, duplicated = smtp.lost_and_duplicated(addresses)
            print(
                f"\nFAULT sigterm: messages={len(addresses)} accepted_before_stop={at_stop}"
                f" exit_seconds={took:.2f} lost={lost} duplicated={duplicated}"
            )
            assert 0 < at_stop < len(addresses)
            assert took < 5
            assert lost == 0
            assert duplicated == 0
        finally:
            first.stop()
            if second:
                second.stop()


@postgres_only
async def test_an_smtp_server_slower_than_the_lease_never_gets_a_row_twice(
    fault_db: str, tmp_path: Path
) -> None:
    """Why 2: 7 s per message made a batch outlive the fixed lease, and a second worker
    sent all 200 again while the first was still sending."""
    # a batch of 18 at 1 s each takes 18 s; the lease is 14 s, the shortest the settings
    # allow for a 2 s SMTP timeout (a whole second of room over the server's delay, so a
    # busy machine does not turn the delay into timeouts)
    with SmtpServer(delay=1.0) as smtp:
        env = worker_env(
            fault_db,
            smtp.port,
            mail_connections=1,
            smtp_timeout_seconds=2,
            mail_lease_seconds=14,
        )
        migrate(env)
        addresses = await enqueue(fault_db, 18)
        workers = [Worker(env, tmp_path / "a.log")]
        try:
            await asyncio.sleep(1.0)
            workers.append(Worker(env, tmp_path / "b.log"))
            assert await wait_for(all_sent(fault_db, len(addresses)), 90)
            lost, duplicated = smtp.lost_and_duplicated(addresses)
            print(
                f"\nFAULT slow-smtp: messages={len(addresses)} seconds_per_message=1.0"
                f" lease=14s lost={lost} duplicated={duplicated}"
            )
            assert lost == 0
            assert duplicated == 0
        finally:
            for w in workers:
                w.stop()
