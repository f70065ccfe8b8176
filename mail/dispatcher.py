"""The outbox dispatcher: claims due rows, sends them over a few SMTP connections and
records each message the moment the server has accepted it (SPEC 5, 7.3).

Guarantees, and how they are kept:

- **Effectively once.** A row is marked sent in its own transaction right after the
  server's 250. Several lanes (SMTP connections) send at once, but the step that may make
  a message the server's (DATA; a text's POST) and the commit of its outcome are taken in
  the worker's one hand-over turn (``mail.transports.HandOver``), so however many lanes
  there are, at most one message per worker is ever "maybe delivered, not recorded": a
  worker killed outright re-sends at most one message in all (docs/delivery.md gives the
  reasoning and what it costs).
- **One worker per row.** Rows are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and
  leased by moving ``next_attempt_at`` forward by ``PORTAL_MAIL_LEASE_SECONDS``. The lease
  is renewed while the batch is in progress, and a message is started only while the
  worker's own (last renewed) lease outlasts the longest a message may take, so a slow
  server never lets a second worker take rows the first is still sending. A crashed
  worker's rows come back when its lease ends.
- **Stopping** (SIGTERM) finishes the message in hand, records it, and hands the rest of
  the batch back at once.
- **Healing.** Every database step runs in a task of its own, so a connection that failed
  mid-transaction cannot stay bound to the loop; any database error discards the pool and
  the step is retried with backoff. After ``max_failures`` consecutive failures
  ``DispatcherBroken`` is raised and ``portal mail-worker`` exits non-zero, so its
  supervisor restarts it.
- **An outage is not a bounce.** Only a permanent reply to the message itself gives up at
  once; anything else is retried with capped exponential backoff until the message is
  ``PORTAL_MAIL_GIVE_UP_AFTER_HOURS`` old.

What an outcome means for the link a message carried is not decided here: each outcome is
reported through the ``on_outcome`` callback that whoever starts the dispatcher supplies
(``onboarding.delivery.record_delivery_outcome``), so ``mail/`` never writes link rows.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

import structlog
from tortoise.transactions import in_transaction

from core import metrics
from core.background import own_task, poll
from core.clock import utcnow
from core.link_keys import LinkKeys
from core.settings import Settings
from mail import compose
from mail.sms import SMS, ByChannel, sms_transport_for
from mail.transports import (
    HandOver,
    Outcome,
    Outgoing,
    Result,
    Transport,
    message_deadline,
    transport_for,
    without_address,
)
from models import OutboxMessage, OutboxStatus
from models.database import discard_connections

log = structlog.get_logger("mail.dispatcher")

BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 30 * 60
# Database retries inside one worker: quick at first, never more than this apart.
DB_BACKOFF_FIRST = 0.2
DB_BACKOFF_CAP = 5.0
# A database step that takes longer than this is treated as a broken connection.
DB_STEP_TIMEOUT = 30.0

T = TypeVar("T")


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"  # the SMTP server accepted it (or the file/console wrote it)
    RETRY = "retry"  # a transient failure; the row waits for its next attempt
    FAILED = "failed"  # given up for good


class DeliveryCallback(Protocol):
    """Told each message's outcome inside the transaction that settles its outbox row,
    before the row is written, so a callback that locks a patient locks it first.
    Outcomes reported at the same moment share one transaction; their callbacks are then
    called in ascending patient id order, the order patients are always locked in."""

    async def __call__(
        self,
        *,
        message_id: int,
        patient_id: int | None,
        link_id: int | None,
        outcome: DeliveryOutcome,
        reason: str | None,
    ) -> None: ...


class DispatcherBroken(RuntimeError):
    """The database failed this many times in a row: let the supervisor restart us."""


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    returned: int = 0  # claimed but handed back unsent (stopping, lease running out)

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed


@dataclass
class _Entry:
    row: OutboxMessage
    outcome: DeliveryOutcome
    reason: str | None
    attempts: int
    now: datetime
    done: asyncio.Future[None] | None = None


@dataclass
class _Batch:
    rows: list[OutboxMessage]
    deadline: float  # monotonic time the lease ends, as last renewed
    in_hand: set[int] = field(default_factory=set)
    queue: list[_Entry] = field(default_factory=list)  # outcomes waiting for a commit
    writer: asyncio.Future[None] | None = None


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempts - 1)))


class LinkUnavailable(ValueError):
    """No key this process holds made the message's link (a wrong or retired
    ``PORTAL_SECRET_KEY``): it can never carry a working link, so it fails for good and
    the link is revoked as undeliverable."""


def _with_link(params: dict, keys: LinkKeys) -> dict:
    """The variables with the message's link derived from its nonce, in memory only. A
    raw ``link`` in the row (queued by a version before link keys) is never sent: it is
    dropped, the message cannot render and fails closed (migration 0015)."""
    params = {k: v for k, v in params.items() if k != "link"}
    nonce = params.pop(compose.LINK_NONCE, None)
    if nonce is None:
        return params
    token = keys.token_for(nonce, params.pop(compose.LINK_DIGEST, ""))
    if token is None:
        raise LinkUnavailable("the link was made under a key this process does not hold")
    params["link"] = compose.link_url(params.pop(compose.LINK_BASE), token)
    return params


def _outgoing(row: OutboxMessage, keys: LinkKeys) -> Outgoing:
    rendered = compose.render(row.kind, _with_link(row.params, keys), row.channel)
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
        max_failures: int | None = None,
        sms_transport: Transport | None = None,
    ) -> None:
        self.settings = settings
        self.on_outcome = on_outcome
        # Re-derives each message's link at send time (the outbox holds only its nonce).
        self.link_keys = LinkKeys.from_settings(settings)
        # Texts (SPEC 9.3) share the outbox: ByChannel sends each row by its channel.
        self.transport = ByChannel(
            transport or transport_for(settings), sms_transport or sms_transport_for(settings)
        )
        self.batch_size = batch_size
        # None: never give up (the server's own dispatcher; /readyz reports the outage).
        self.max_failures = max_failures
        self.failures = 0  # consecutive database failures
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()
        # The worker's one hand-over turn, shared by all its lanes and batches.
        self._turn = asyncio.Lock()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.mail_lease_seconds)

    def notify(self) -> None:
        """Called after a commit that queued mail, so it leaves without waiting a poll."""
        self._wake.set()

    # --- database steps -------------------------------------------------------------

    async def _db(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """Run one database step until it succeeds. Each try runs in a task of its own:
        Tortoise binds a transaction's connection to the running task's context, and a
        transaction whose BEGIN failed never unbinds it, which left a worker reusing a
        dead connection forever."""
        while True:
            try:
                result = await asyncio.wait_for(own_task(step), DB_STEP_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                metrics.WORKER_DB_ERRORS.inc()
                log.warning(
                    "mail.database_error",
                    step=what,
                    error=type(exc).__name__,
                    consecutive=self.failures,
                )
                await discard_connections()
                if self.max_failures is not None and self.failures >= self.max_failures:
                    raise DispatcherBroken(
                        f"{self.failures} consecutive database failures"
                    ) from exc
                delay = min(DB_BACKOFF_CAP, DB_BACKOFF_FIRST * 2 ** (self.failures - 1))
                # Jitter, so workers that failed together do not retry in step.
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311
                continue
            self.failures = 0
            return result

    async def _claim(self) -> _Batch | None:
        # One id per claim, kept across its retries: if a try's COMMIT went through but
        # its reply was lost (the connection died), the next try finds the rows that
        # try leased instead of leaving them unsent until the lease ends.
        token = uuid.uuid4().hex
        tries = 0

        async def claim() -> list[OutboxMessage]:
            nonlocal tries
            tries += 1
            return await self._claim_rows(token, retry=tries > 1)

        started = time.monotonic()
        rows = await self._db(claim, "claim")
        if not rows:
            return None
        batch = _Batch(rows, started + self.settings.mail_lease_seconds)
        batch.in_hand = {r.id for r in rows}
        return batch

    async def _claim_rows(self, token: str, *, retry: bool) -> list[OutboxMessage]:
        now = utcnow()
        async with in_transaction():
            if retry:
                # Still leased (so no other worker has them) and leased by this claim.
                mine = await OutboxMessage.filter(
                    status=OutboxStatus.PENDING, next_attempt_at__gt=now, claim=token
                ).order_by("id")
                if mine:
                    log.info("mail.claim_recovered", rows=len(mine))
                    return mine
            rows = (
                await OutboxMessage.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
                .order_by("id")
                .limit(self.batch_size)
                .select_for_update(skip_locked=True)
            )
            if rows:
                await OutboxMessage.filter(id__in=[r.id for r in rows]).update(
                    next_attempt_at=now + self.lease, claim=token
                )
        return rows

    async def _renew(self, batch: _Batch) -> None:
        """Keep the lease on the rows still in hand while the batch is in progress."""
        every = self.settings.mail_lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            ids = list(batch.in_hand)
            if not ids:
                return
            started = time.monotonic()
            try:
                await asyncio.wait_for(
                    asyncio.ensure_future(
                        OutboxMessage.filter(id__in=ids, status=OutboxStatus.PENDING).update(
                            next_attempt_at=utcnow() + self.lease
                        )
                    ),
                    every,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The lanes stop starting messages when the old lease runs short, so a
                # failed renewal can cost time, never a second sender.
                log.warning("mail.lease_renewal_failed", error=type(exc).__name__)
                await discard_connections()
                continue
            batch.deadline = started + self.settings.mail_lease_seconds

    # --- sending --------------------------------------------------------------------

    async def run_once(self) -> DispatchStats:
        """Send one batch of due messages."""
        stats = DispatchStats()
        batch = await self._claim()
        if batch is None:
            return stats
        rows = batch.rows
        rendered: dict[int, Outgoing] = {}
        for row in rows:
            try:
                out = _outgoing(row, self.link_keys)
            except Exception as exc:  # a row that cannot be rendered can never be sent
                await self._settle(
                    batch,
                    row,
                    Result(Outcome.PERMANENT, f"cannot render: {type(exc).__name__}"),
                    stats,
                )
                continue
            rendered[row.id] = out
        sendable = [r for r in rows if r.id in rendered]
        # Several SMTP connections at once: one connection waits a round trip per
        # command, so a batch split over N connections leaves roughly N times faster.
        # A recipient's messages share a lane, so they still arrive in order.
        lanes = max(1, min(self.settings.mail_connections, len(sendable)))
        chunks: list[list[OutboxMessage]] = [[] for _ in range(lanes)]
        for row in sendable:
            chunks[zlib.crc32(row.to_addr.casefold().encode()) % lanes].append(row)
        margin = message_deadline(self.settings) + 1.0

        def proceed() -> bool:
            # Start a message only if it ends inside our lease, whatever the server does.
            return not self.stopping.is_set() and time.monotonic() + margin < batch.deadline

        hand_over = HandOver(proceed, self._turn)

        def lane(chunk: list[OutboxMessage]) -> Awaitable[None]:
            async def settle(i: int, result: Result) -> None:
                await self._settle(batch, chunk[i], result, stats)

            return self.transport.send([rendered[r.id] for r in chunk], proceed, settle, hand_over)

        renewer = asyncio.create_task(self._renew(batch))
        try:
            await asyncio.gather(*(lane(c) for c in chunks if c))
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            if batch.in_hand:
                await self._give_back(batch, stats)
        log.info(
            "mail.batch",
            sent=stats.sent,
            retried=stats.retried,
            failed=stats.failed,
            returned=stats.returned,
        )
        return stats

    async def _give_back(self, batch: _Batch, stats: DispatchStats) -> None:
        """Rows claimed but not attempted go back at once, attempts unchanged."""
        ids = list(batch.in_hand)

        async def release() -> None:
            await OutboxMessage.filter(id__in=ids, status=OutboxStatus.PENDING).update(
                next_attempt_at=utcnow()
            )

        await self._db(release, "release")
        stats.returned += len(ids)
        batch.in_hand.clear()

    async def _settle(
        self, batch: _Batch, row: OutboxMessage, result: Result, stats: DispatchStats
    ) -> None:
        """Decide one message's outcome and record it before returning (the lane sends
        its next message only then)."""
        now = utcnow()
        attempts = row.attempts + 1
        outcome: DeliveryOutcome
        text = row.channel == SMS
        if result.outcome is Outcome.SENT:
            # A text's link shows the provider's words ("queued SM…"); an email's, none.
            outcome, reason = DeliveryOutcome.DELIVERED, result.detail if text else None
        elif result.outcome is Outcome.PERMANENT:
            # Twilio's refusal ("21211 The 'To' number …") speaks for itself.
            reason = result.detail if text else f"permanent SMTP reply: {result.detail}"
            outcome = DeliveryOutcome.FAILED
        elif now - row.created_at >= timedelta(hours=self.settings.mail_give_up_after_hours):
            outcome = DeliveryOutcome.FAILED
            reason = (
                f"gave up after {self.settings.mail_give_up_after_hours:g} h of transient"
                f" failures; last: {result.detail}"
            )
        else:
            outcome, reason = DeliveryOutcome.RETRY, result.detail

        # Every transport's words, Twilio's too ("The 'To' number +1617… is not valid"):
        # the reason is logged and shown on the link.
        reason = without_address(reason, row.to_addr)
        await self._record(batch, _Entry(row, outcome, reason, attempts, now))
        batch.in_hand.discard(row.id)
        metrics.DELIVERIES.labels(outcome=outcome.value).inc()
        if outcome is DeliveryOutcome.DELIVERED:
            stats.sent += 1
            return
        if outcome is DeliveryOutcome.RETRY:
            stats.retried += 1
        else:
            stats.failed += 1
        # Never the address or the link: the row id and kind find the message.
        log.warning(
            "mail.delivery_failed",
            message_id=row.id,
            kind=row.kind,
            outcome=outcome.value,
            attempts=attempts,
            reason=reason,
        )

    async def _record(self, batch: _Batch, entry: _Entry) -> None:
        """Group commit: outcomes that lanes report while a commit is in flight share
        the next one. A message that was handed over is settled inside the worker's
        hand-over turn, so it is always alone in its commit; what shares one is the
        outcomes nothing was handed over for (a server that cannot be reached, a
        refused recipient), settled outside the turn. Each lane waits for its own
        message's commit before sending again."""
        entry.done = asyncio.get_running_loop().create_future()
        batch.queue.append(entry)
        if batch.writer is None or batch.writer.done():
            batch.writer = asyncio.ensure_future(self._write_queued(batch))
        await entry.done

    async def _write_queued(self, batch: _Batch) -> None:
        while batch.queue:
            items, batch.queue = batch.queue, []
            try:
                await self._db(lambda items=items: self._write(items), "record")  # type: ignore[misc]
            except BaseException as exc:
                for entry in [*items, *batch.queue]:
                    if entry.done is not None and not entry.done.done():
                        entry.done.set_exception(exc)
                batch.queue.clear()
                return
            for entry in items:
                if entry.done is not None and not entry.done.done():
                    entry.done.set_result(None)

    async def _write(self, items: list[_Entry]) -> None:
        # Callbacks first, in patient id order: a callback may lock its patient, and
        # patients are always locked in id order (models.patient.lock_patients).
        async with in_transaction() as tx:
            for e in sorted(items, key=lambda e: (e.row.patient_id or 0, e.row.id)):
                await self.on_outcome(
                    message_id=e.row.id,
                    patient_id=e.row.patient_id,
                    link_id=e.row.link_id,
                    outcome=e.outcome,
                    reason=e.reason,
                )
            delivered = [e.row.id for e in items if e.outcome is DeliveryOutcome.DELIVERED]
            if delivered:
                # The variables may hold a one-time link: once the message has left
                # nothing needs it, so it does not stay in the database. Plain SQL: this
                # runs once per message sent, and building it through the ORM's query
                # builder cost about as much CPU as the rest of the commit.
                mark = "?" if tx.capabilities.dialect == "sqlite" else "${}"
                ids = ", ".join(mark.format(n + 2) for n in range(len(delivered)))
                await tx.execute_query(
                    f"UPDATE outbox_message SET status = '{OutboxStatus.SENT.value}',"  # noqa: S608
                    f" sent_at = {mark.format(1)}, params = '{{}}', last_error = NULL"
                    f" WHERE id IN ({ids})",
                    [items[0].now, *delivered],
                )
            for e in items:
                query = OutboxMessage.filter(id=e.row.id)
                if e.outcome is DeliveryOutcome.RETRY:
                    await query.update(
                        attempts=e.attempts,
                        next_attempt_at=e.now + backoff(e.attempts),
                        last_error=e.reason,
                    )
                elif e.outcome is DeliveryOutcome.FAILED:
                    await query.update(
                        status=OutboxStatus.FAILED,
                        attempts=e.attempts,
                        last_error=e.reason,
                        params={},
                    )

    async def drain(self) -> DispatchStats:
        """Send until nothing is due (tests, the CLI, shutdown)."""
        total = DispatchStats()
        while True:
            stats = await self.run_once()
            total.sent += stats.sent
            total.retried += stats.retried
            total.failed += stats.failed
            total.returned += stats.returned
            if not stats.handled or self.stopping.is_set():
                return total

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; the message in hand is finished and recorded,
        the rest of its batch handed back. Raises ``DispatcherBroken`` (only with
        ``max_failures``)."""
        watcher = asyncio.create_task(self._forward_stop(stop))

        async def handled() -> int:
            return (await self.run_once()).handled

        try:
            await poll(
                "mail",
                handled,
                self._wake,
                stop,
                self.settings.mail_poll_seconds,
                fatal=(DispatcherBroken,),
            )
        finally:
            watcher.cancel()

    async def _forward_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopping.set()
