"""Rate limits with the `limits` library's async API (SECURITY GQL-9, TOK-7, ENUM-3):
in process memory by default, in Redis when ``PORTAL_REDIS_URL`` is set so that every
worker and host shares one budget.

Redis gets deadlines: ``PORTAL_REDIS_TIMEOUT_SECONDS`` bounds connecting and each command,
and a whole check. When Redis is down, refuses or hangs, the check falls back to this
process's own in-memory budget for ``REDIS_RETRY_SECONDS`` before Redis is tried again
(decision recorded in README.md): patients keep logging in during a Redis outage, each
process still throttles guessing on its own, and no request waits on a dead Redis.
Refusing everyone instead would turn a cache outage into a portal outage."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import structlog
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from core import metrics
from core.settings import Settings

log = structlog.get_logger("core.ratelimit")

# After a Redis failure, use the per-process budget this long before trying Redis again,
# so an outage costs one timeout per process every few seconds, not one per request.
REDIS_RETRY_SECONDS = 5.0


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.redis_timeout_seconds
        self.local_storage = storage_from_string("async+memory://")
        self.local = MovingWindowRateLimiter(self.local_storage)
        self.shared: MovingWindowRateLimiter | None = None
        # limits' async storages (typed as its sync ones by storage_from_string)
        self.shared_storage: Any = None
        if settings.redis_url:
            uri = (
                "async+" + settings.redis_url
                if not settings.redis_url.startswith("async+")
                else settings.redis_url
            )
            self.shared_storage = storage_from_string(
                uri, connect_timeout=self.timeout, stream_timeout=self.timeout
            )
            self.shared = MovingWindowRateLimiter(self.shared_storage)
        self._redis_retry_at = 0.0
        self.limits: dict[str, RateLimitItem] = {
            "login": parse(settings.rate_limit_login),
            "token": parse(settings.rate_limit_token),
            "self_service": parse(settings.rate_limit_self_service),
            "username_check": parse(settings.rate_limit_username_check),
            "set_credentials": parse(settings.rate_limit_set_credentials),
        }

    @property
    def redis_degraded(self) -> bool:
        return self.shared is not None and time.monotonic() < self._redis_retry_at

    async def allow(self, scope: str, *keys: str) -> bool:
        """Count one hit against every key (client address, account, email); refuse when
        any budget is spent. Keys are hashed so Redis never holds an address or email."""
        item = self.limits[scope]
        hashed = [
            hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32] for key in keys
        ]
        allowed: bool | None = None
        if self.shared is not None and not self.redis_degraded:
            try:
                allowed = await asyncio.wait_for(
                    self._hit(self.shared, item, scope, hashed), self.timeout * 2
                )
            except Exception as exc:  # noqa: BLE001 - any Redis failure means: fall back
                self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
                metrics.RATE_LIMIT_BACKEND_ERRORS.inc()
                log.warning(
                    "rate_limit.redis_unavailable",
                    error=type(exc).__name__,
                    fallback="per-process limits",
                    retry_in_seconds=REDIS_RETRY_SECONDS,
                )
        if allowed is None:
            allowed = await self._hit(self.local, item, scope, hashed)
        if not allowed:
            # OWASP vocabulary excess_rate_limit_exceeded (SECURITY LOG-2); the keys are
            # addresses and emails, so only which budget ran out is logged.
            metrics.RATE_LIMITED.labels(limit=scope).inc()
            log.warning("rate_limit.exceeded", scope=scope)
        return allowed

    @staticmethod
    async def _hit(
        strategy: MovingWindowRateLimiter, item: RateLimitItem, scope: str, hashed: list[str]
    ) -> bool:
        allowed = True
        for key in hashed:
            if not await strategy.hit(item, scope, key):
                allowed = False
        return allowed

    async def ping(self) -> bool:
        """Readiness: is the shared budget reachable (True when none is configured)?"""
        if self.shared_storage is None:
            return True
        try:
            return bool(await asyncio.wait_for(self.shared_storage.check(), self.timeout * 2))
        except Exception:  # noqa: BLE001
            return False

    def close(self) -> None:
        """Drop Redis connections (shutdown, tests)."""
        client = getattr(getattr(self.shared_storage, "bridge", None), "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    async def reset(self) -> None:
        await self.local_storage.reset()  # type: ignore[misc]
        if self.shared_storage is not None:
            await self.shared_storage.reset()
