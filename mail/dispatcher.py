"""The outbox dispatcher: claims due rows, sends them over one transport connection per
batch, retries transient failures with exponential backoff and gives up on permanent
ones. What an outcome means for the link a message carried (SPEC 7.3) is not decided
here: each outcome is reported through the ``on_outcome`` callback that whoever starts
the dispatcher supplies (``onboarding.delivery.record_delivery_outcome``), so ``mail/``
never writes link rows.

Several dispatchers may run at once (the server's own loop and ``portal mail-worker``
processes): on PostgreSQL rows are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and
leased by moving ``next_attempt_at`` forward, so a crashed worker's rows come back.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

import structlog
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.settings import Settings
from mail import compose
from mail.sms import ByChannel, sms_transport_for
from mail.transports import Outcome, Outgoing, Result, Transport, transport_for
from models import OutboxMessage, OutboxStatus

log = structlog.get_logger("mail.dispatcher")

LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 30


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"  # the SMTP server accepted it (or the file/console wrote it)
    RETRY = "retry"  # a transient failure; the row waits for its next attempt
    FAILED = "failed"  # given up for good


class DeliveryCallback(Protocol):
    """Told each message's outcome inside the transaction that settles its outbox row,
    before the row is written, so a callback that locks a patient locks it first."""

    async def __call__(
        self,
        *,
        message_id: int,
        patient_id: int | None,
        link_id: int | None,
        outcome: DeliveryOutcome,
        reason: str | None,
    ) -> None: ...


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed


def _outgoing(row: OutboxMessage) -> Outgoing:
    rendered = compose.render(row.kind, row.params, row.channel)
    return Outgoing(
        row.to_addr,
        rendered.subject,
        rendered.text,
        rendered.html,
        channel=row.channel,
        reply_to=rendered.reply_to,
        sender_name=rendered.sender_name,
    )


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        transport: Transport | None = None,
        *,
        on_outcome: DeliveryCallback,
        batch_size: int = 400,
        sms_transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self.on_outcome = on_outcome
        # Texts (SPEC 9.3) share the outbox: ByChannel sends each row by its channel.
        self.transport = ByChannel(
            transport or transport_for(settings), sms_transport or sms_transport_for(settings)
        )
        self.batch_size = batch_size
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Called after a commit that queued mail, so it leaves without waiting a poll."""
        self._wake.set()

    async def _claim(self) -> list[OutboxMessage]:
        now = utcnow()
        async with in_transaction():
            rows = (
                await OutboxMessage.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
                .order_by("id")
                .limit(self.batch_size)
                .select_for_update(skip_locked=True)
            )
            if rows:
                await OutboxMessage.filter(id__in=[r.id for r in rows]).update(
                    next_attempt_at=now + LEASE
                )
        return rows

    async def run_once(self) -> DispatchStats:
        """Send one batch of due messages."""
        stats = DispatchStats()
        rows = await self._claim()
        if not rows:
            return stats
        items = [_outgoing(r) for r in rows]
        # Several SMTP connections at once: one connection waits a round trip per
        # command, so a batch split over N connections leaves roughly N times faster.
        # A recipient's messages share a lane, so they still arrive in order.
        lanes = max(1, min(self.settings.mail_connections, len(items)))
        lane_of = [zlib.crc32(item.to_addr.casefold().encode()) % lanes for item in items]
        chunks = [[i for i, lane in enumerate(lane_of) if lane == n] for n in range(lanes)]
        chunks = [c for c in chunks if c]
        sent = await asyncio.gather(
            *(self.transport.send([items[i] for i in chunk]) for chunk in chunks)
        )
        results: list[Result] = [Result(Outcome.TRANSIENT)] * len(items)
        for chunk, chunk_results in zip(chunks, sent, strict=True):
            for i, result in zip(chunk, chunk_results, strict=True):
                results[i] = result
        await self._settle(rows, results, stats)
        log.info("mail.batch", sent=stats.sent, retried=stats.retried, failed=stats.failed)
        return stats

    async def drain(self) -> DispatchStats:
        """Send until nothing is due (tests, the CLI, shutdown)."""
        total = DispatchStats()
        while True:
            stats = await self.run_once()
            if not stats.handled:
                return total
            total.sent += stats.sent
            total.retried += stats.retried
            total.failed += stats.failed

    async def _settle(
        self, rows: list[OutboxMessage], results: list[Result], stats: DispatchStats
    ) -> None:
        now = utcnow()
        sent = [r for r, res in zip(rows, results, strict=True) if res.outcome is Outcome.SENT]
        stats.sent = len(sent)
        failed: list[tuple[OutboxMessage, int, str | None]] = []
        async with in_transaction():
            for row, result in zip(rows, results, strict=True):
                if result.outcome is Outcome.SENT:
                    # The provider's words ("queued SM…", "250 OK") show on the link.
                    await self._report(row, DeliveryOutcome.DELIVERED, result.detail)
            if sent:
                # The variables may hold a one-time link: once the message has left
                # nothing needs it, so it does not stay in the database.
                await OutboxMessage.filter(id__in=[r.id for r in sent]).update(
                    status=OutboxStatus.SENT, sent_at=now, params={}, last_error=None
                )
            for row, result in zip(rows, results, strict=True):
                if result.outcome is Outcome.SENT:
                    continue
                attempts = row.attempts + 1
                if (
                    result.outcome is Outcome.TRANSIENT
                    and attempts < self.settings.mail_max_attempts
                ):
                    stats.retried += 1
                    delay = timedelta(seconds=BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
                    await self._report(row, DeliveryOutcome.RETRY, result.detail)
                    await OutboxMessage.filter(id=row.id).update(
                        attempts=attempts, next_attempt_at=now + delay, last_error=result.detail
                    )
                    continue
                stats.failed += 1
                failed.append((row, attempts, result.detail))
        # Each in a transaction of its own, the callback first (it locks the patient
        # before touching the link: onboarding.unit_of_work).
        for row, attempts, detail in failed:
            async with in_transaction():
                await self._report(row, DeliveryOutcome.FAILED, detail)
                await OutboxMessage.filter(id=row.id).update(
                    status=OutboxStatus.FAILED, attempts=attempts, last_error=detail, params={}
                )

    async def _report(
        self, row: OutboxMessage, outcome: DeliveryOutcome, reason: str | None
    ) -> None:
        await self.on_outcome(
            message_id=row.id,
            patient_id=row.patient_id,
            link_id=row.link_id,
            outcome=outcome,
            reason=reason,
        )

    async def run_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                stats = await self.run_once()
            except Exception:  # a database hiccup must not kill the loop
                log.exception("mail.dispatch_failed")
                stats = DispatchStats()
            if stats.handled:
                continue
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(
                waiters,
                timeout=self.settings.mail_poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for w in waiters:
                w.cancel()
