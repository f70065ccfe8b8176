"""The webhook delivery loop (SPEC 8.8), run by the same processes as the mail
dispatcher: inside the server (``graph.app`` lifespan) and in ``portal mail-worker``.

At least once, in order per patient and endpoint:

- A worker claims *due heads*: pending deliveries with no older pending delivery of the
  same patient to the same endpoint. On PostgreSQL the claim is ``FOR UPDATE SKIP
  LOCKED`` and writes a lease (``lease_until``); another worker skips locked rows and,
  because the claimed head is still pending, never takes the patient's next event.
- The HTTP call happens outside any transaction. Settling a delivery is conditional
  on the lease the worker wrote: a worker whose lease ran out (it hung, or was killed
  and its lease expired) cannot overwrite the row another worker has since claimed.
- A failure schedules a retry with exponential backoff and jitter; a delivery still
  failing ``webhook_retry_hours`` after it was written disables its endpoint, with the
  reason staff see. Its deliveries stay pending: re-enabling the endpoint sends them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import structlog
from tortoise import connections
from tortoise.transactions import in_transaction

from core.background import poll
from core.clock import utcnow
from core.ids import patient_global_id
from core.settings import Settings
from models import PortalEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from models.webhook import PARKED
from onboarding.sql import Params, as_datetime
from onboarding.webhooks import checked_transport, signature_header, url_problem

log = structlog.get_logger("webhooks")

EXCERPT_BYTES = 200
MAX_BACKOFF_SECONDS = 3600.0
_random = secrets.SystemRandom()


@dataclass
class Claimed:
    id: int
    endpoint_id: int
    event_id: int
    attempts: int
    created_at: datetime
    lease_until: datetime


@dataclass
class Outcome:
    ok: bool
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None


def payload(event: PortalEvent) -> bytes:
    """The message body: Standard Webhooks' ``type``/``timestamp``/``data`` shape. The
    data names the practice and the patient and gives the status after the change;
    never a token, password, link or address."""
    return orjson.dumps(
        {
            "type": event.type,
            "timestamp": event.occurred_at.isoformat(),
            "data": {
                "eventId": f"evt_{event.id}",
                "practiceId": str(event.practice_id),
                "patientId": patient_global_id(event.patient_id),
                "sequence": event.seq,
                "portalStatus": event.portal_status,
                "occurredAt": event.occurred_at.isoformat(),
            },
        }
    )


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """base, 2*base, 4*base... capped at an hour, each scaled by a random 0.5-1.0 so a
    recovering receiver is not hit by every worker's retries in the same second."""
    delay = min(base_seconds * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS)
    return timedelta(seconds=delay * _random.uniform(0.5, 1.0))


class WebhookWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = 200,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self._client = client
        self._wake = asyncio.Event()

    def notify(self, *_: Any) -> None:
        """Called after a commit that wrote events (``onboarding.events.announce``)."""
        self._wake.set()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = self.settings.webhook_timeout_seconds
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                # A redirect could point anywhere (SSRF); a 3xx is a failed attempt.
                follow_redirects=False,
                trust_env=False,
                # Addresses are checked again when connecting (DNS rebinding).
                transport=checked_transport(self.settings),
                headers={"user-agent": "patient-portal-webhooks/1"},
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- claim -----------------------------------------------------------------------

    async def _claim(self) -> list[Claimed]:
        conn = connections.get("default")
        params = Params(conn.capabilities.dialect)
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.webhook_lease_seconds)
        at = params(now)
        heads = (
            "SELECT d.id FROM webhook_delivery d"  # noqa: S608 (constants and parameters)
            " JOIN webhook_endpoint w ON w.id = d.endpoint_id AND w.enabled"
            f" WHERE d.status = 'pending' AND d.next_attempt_at <= {at}"
            f" AND (d.lease_until IS NULL OR d.lease_until <= {at})"
            " AND NOT EXISTS (SELECT 1 FROM webhook_delivery o WHERE o.endpoint_id ="
            " d.endpoint_id AND o.patient_id = d.patient_id AND o.status = 'pending'"
            f" AND o.id < d.id) ORDER BY d.id LIMIT {params(self.batch_size)}"
        )
        if params.dialect == "postgres":
            heads += " FOR UPDATE OF d SKIP LOCKED"
        lease = params(lease_until)
        # Deliveries of disabled endpoints (kept, docs/events.md) would be due forever
        # and walked by every claim: parked once instead; enabling makes them due.
        park = Params(params.dialect)
        parked = (
            f"UPDATE webhook_delivery SET next_attempt_at = {park(PARKED)}"  # noqa: S608
            f" WHERE status = 'pending' AND next_attempt_at <= {park(now)}"
            " AND endpoint_id IN (SELECT id FROM webhook_endpoint WHERE NOT enabled)"
        )
        async with in_transaction() as tx:
            await tx.execute_query(parked, park.values)
            rows = await tx.execute_query_dict(
                f"UPDATE webhook_delivery SET lease_until = {lease}"  # noqa: S608
                f" WHERE id IN ({heads})"
                " RETURNING id, endpoint_id, event_id, attempts, created_at",
                params.values,
            )
        return sorted(
            (
                Claimed(
                    id=row["id"],
                    endpoint_id=row["endpoint_id"],
                    event_id=row["event_id"],
                    attempts=row["attempts"],
                    created_at=as_datetime(row["created_at"]) or now,
                    lease_until=lease_until,
                )
                for row in rows
            ),
            key=lambda c: c.id,
        )

    # -- send ------------------------------------------------------------------------

    async def _send(self, endpoint: WebhookEndpoint, event: PortalEvent) -> Outcome:
        # The URL itself; its addresses are checked by the transport when it connects.
        if why := await url_problem(endpoint.url, self.settings, resolve=False):
            return Outcome(False, None, 0, None, f"refused: the URL {why}")
        body = payload(event)
        msg_id = f"evt_{event.id}"
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(endpoint, msg_id, timestamp, body),
        }
        started = time.perf_counter()
        deadline = self.settings.webhook_timeout_seconds
        try:
            # httpx's timeout bounds each read, not the whole answer: a receiver that
            # drips a header byte every few seconds would hold this batch (and every
            # practice's deliveries behind it) for hours. The attempt has one deadline.
            async with asyncio.timeout(deadline):
                async with self.client().stream(
                    "POST", endpoint.url, content=body, headers=headers
                ) as response:
                    excerpt = b""
                    async for chunk in response.aiter_raw():
                        excerpt += chunk
                        if len(excerpt) >= EXCERPT_BYTES:
                            break
                    latency = int((time.perf_counter() - started) * 1000)
                    text = excerpt[:EXCERPT_BYTES].decode("utf-8", "replace")
                    return Outcome(
                        200 <= response.status_code < 300,
                        response.status_code,
                        latency,
                        text,
                        None,
                    )
        except TimeoutError:
            latency = int((time.perf_counter() - started) * 1000)
            return Outcome(False, None, latency, None, f"no whole answer within {deadline:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, OSError) as exc:
            # InvalidURL and ValueError: a URL stored before the stricter check (it is
            # not an HTTPError); settled as a failed attempt, not left leased forever.
            latency = int((time.perf_counter() - started) * 1000)
            # The class and message of the failure, never the URL (it may hold a key).
            return Outcome(False, None, latency, None, f"{type(exc).__name__}: {exc}"[:300])

    # -- settle ----------------------------------------------------------------------

    async def _settle(
        self, claimed: Claimed, outcome: Outcome, enabled_at: datetime | None = None
    ) -> None:
        now = utcnow()
        attempts = claimed.attempts + 1
        async with in_transaction():
            lease = {"id": claimed.id, "lease_until": claimed.lease_until, "status": "pending"}
            if outcome.ok:
                changed = await WebhookDelivery.filter(**lease).update(
                    status="delivered", delivered_at=now, attempts=attempts, lease_until=None
                )
            else:
                changed = await WebhookDelivery.filter(**lease).update(
                    attempts=attempts,
                    lease_until=None,
                    next_attempt_at=now
                    + backoff(attempts, self.settings.webhook_retry_base_seconds),
                )
            if not changed:
                # The lease ran out and another worker owns the row now: this attempt
                # still happened (the receiver may dedupe by webhook-id), so it is shown.
                log.info("webhooks.lease_lost", delivery=claimed.id)
            await WebhookAttempt.create(
                delivery_id=claimed.id,
                endpoint_id=claimed.endpoint_id,
                attempted_at=now,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                response_excerpt=outcome.excerpt,
                error=outcome.error,
            )
            window = timedelta(hours=self.settings.webhook_retry_hours)
            # Failing since the event, or since staff last enabled the endpoint if later
            # (events kept while it was off are not a day of failures).
            since = max(claimed.created_at, enabled_at or claimed.created_at)
            if changed and not outcome.ok and now - since >= window:
                what = (
                    f"HTTP {outcome.status_code}"
                    if outcome.status_code is not None
                    else outcome.error
                )
                reason = (
                    f"deliveries failed for {self.settings.webhook_retry_hours:g} hours"
                    f" (last attempt: {what}); pending events are kept and sent when the"
                    " endpoint is enabled again"
                )[:500]
                await WebhookEndpoint.filter(id=claimed.endpoint_id, enabled=True).update(
                    enabled=False, disabled_reason=reason, disabled_at=now
                )
                log.warning("webhooks.endpoint_disabled", endpoint=claimed.endpoint_id)

    # -- loop ------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch of due heads, send them concurrently, settle each; returns
        how many were attempted."""
        claimed = await self._claim()
        if not claimed:
            return 0
        endpoints = {
            e.id: e for e in await WebhookEndpoint.filter(id__in={c.endpoint_id for c in claimed})
        }
        found = {e.id: e for e in await PortalEvent.filter(id__in=[c.event_id for c in claimed])}
        gate = asyncio.Semaphore(self.settings.webhook_concurrency)

        async def one(item: Claimed) -> None:
            endpoint, event = endpoints.get(item.endpoint_id), found.get(item.event_id)
            if endpoint is None or event is None:
                return  # deleted meanwhile; its deliveries went with it
            async with gate:
                outcome = await self._send(endpoint, event)
            await self._settle(item, outcome, endpoint.enabled_at)

        await asyncio.gather(*(one(c) for c in claimed))
        return len(claimed)

    async def drain(self) -> int:
        """Deliver until nothing is due (tests, ``mail-worker --once``)."""
        total = 0
        while handled := await self.run_once():
            total += handled
        return total

    async def run_forever(self, stop: asyncio.Event) -> None:
        try:
            await poll("webhooks", self.run_once, self._wake, stop, self.settings.mail_poll_seconds)
        finally:
            await self.close()
