"""The live list's fan-out (SPEC 8.9): every server process hears every committed event
and pushes it to its own ``onboardingChanged`` subscribers of that practice.

Where the news comes from:

- PostgreSQL: the transaction that writes events also sends ``NOTIFY portal_events``
  (``onboarding.events.emit``), delivered at commit to every listening connection. Each
  process keeps one dedicated asyncpg connection that LISTENs (pooled connections are
  never used: a LISTEN would stay on whichever request got the connection next), and
  reconnects when it drops.
- ``PORTAL_REDIS_URL`` set: committed events are published to a Redis channel after
  commit and every process subscribes (for deployments that already share Redis).
- SQLite (one host, one process): the unit of work's after-commit announcement.

A notification carries only the practice and event ids; the process reads the events
once (and only when it has a subscriber of that practice) and copies them into each
subscriber's bounded queue. A queue that is full means the client does not keep up: it
is dropped (closed with :data:`SLOW_SUBSCRIBER_CLOSE_CODE`) rather than slowing anyone
else, and the client reconnects and re-reads the list.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from tortoise.backends.base.config_generator import expand_db_url

from core.settings import Settings
from models import PortalEvent
from models.database import normalise_url
from onboarding import events

log = structlog.get_logger("live")

SLOW_SUBSCRIBER_CLOSE_CODE = 4008
SLOW_SUBSCRIBER_REASON = "subscriber too slow: event buffer full; reconnect and re-read"
REDIS_CHANNEL = "portal:events"
RECONNECT_SECONDS = 1.0


@dataclass(eq=False)
class Subscriber:
    practice_id: int
    queue: asyncio.Queue[PortalEvent]
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: PortalEvent) -> None:
        if self.dropped.is_set():
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped.set()


class LiveHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.subscribers: dict[int, set[Subscriber]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._mode = "memory"
        self._redis: Any = None

    # -- subscribers -----------------------------------------------------------------

    def subscribe(self, practice_id: int) -> Subscriber:
        subscriber = Subscriber(practice_id, asyncio.Queue(maxsize=self.settings.live_buffer))
        self.subscribers.setdefault(practice_id, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        group = self.subscribers.get(subscriber.practice_id)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self.subscribers[subscriber.practice_id]

    # -- fan-out ---------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def heard(self, practice_id: int, event_ids: Sequence[int]) -> None:
        """A notification from any source: read the events if anyone here listens."""
        if practice_id in self.subscribers and event_ids:
            self._spawn(self._deliver(practice_id, list(event_ids)))

    async def _deliver(self, practice_id: int, event_ids: list[int]) -> None:
        try:
            rows = await PortalEvent.filter(id__in=event_ids, practice_id=practice_id).order_by(
                "id"
            )
        except Exception:
            log.exception("live.read_failed")
            return
        for subscriber in list(self.subscribers.get(practice_id, ())):
            for row in rows:
                subscriber.offer(row)

    # -- sources ---------------------------------------------------------------------

    async def start(self, database_url: str) -> None:
        url = normalise_url(database_url)
        if self.settings.redis_url:
            self._mode = "redis"
            events.subscribe(self._publish_redis)
            self._spawn(self._listen_redis(self.settings.redis_url))
        elif url.startswith("postgres://"):
            self._mode = "postgres"
            self._spawn(self._listen_postgres(url))
        else:
            events.subscribe(self.heard)

    async def stop(self) -> None:
        self._stop.set()
        events.unsubscribe(self.heard)
        events.unsubscribe(self._publish_redis)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _listen_postgres(self, url: str) -> None:
        credentials = expand_db_url(url)["credentials"]

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                practice_id, ids = events.parse_payload(payload)
            except ValueError:
                return
            self.heard(practice_id, ids)

        while not self._stop.is_set():
            conn = None
            try:
                conn = await asyncpg.connect(
                    host=credentials.get("host"),
                    port=credentials.get("port"),
                    user=credentials.get("user"),
                    password=credentials.get("password"),
                    database=credentials.get("database"),
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(events.NOTIFY_CHANNEL, on_notify)
                log.info("live.listening", source="postgres")
                stop_wait = asyncio.ensure_future(self._stop.wait())
                lost_wait = asyncio.ensure_future(lost.wait())
                try:
                    await asyncio.wait([stop_wait, lost_wait], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop_wait.cancel()
                    lost_wait.cancel()
            except (OSError, asyncpg.PostgresError):
                log.warning("live.listen_failed", source="postgres")
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            if not self._stop.is_set():
                await asyncio.sleep(RECONNECT_SECONDS)

    def _publish_redis(self, practice_id: int, event_ids: list[int]) -> None:
        if self._redis is not None:
            for payload in events.notify_payloads(practice_id, event_ids):
                self._spawn(self._redis.publish(REDIS_CHANNEL, payload))

    async def _listen_redis(self, url: str) -> None:
        import coredis  # the Redis client the rate limits already use (limits[async-redis])

        while not self._stop.is_set():
            try:
                client = coredis.Redis.from_url(url, decode_responses=True)
                self._redis = client
                async with client.pubsub(
                    channels=[REDIS_CHANNEL], ignore_subscribe_messages=True
                ) as pubsub:
                    log.info("live.listening", source="redis")
                    async for message in pubsub:
                        try:
                            practice_id, ids = events.parse_payload(str(message["data"]))
                        except (ValueError, KeyError):
                            continue
                        self.heard(practice_id, ids)
            except Exception:
                log.warning("live.listen_failed", source="redis")
            if not self._stop.is_set():
                await asyncio.sleep(RECONNECT_SECONDS)
