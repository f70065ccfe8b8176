"""Rate limits with the `limits` library's async API (SECURITY GQL-9, TOK-7, ENUM-3):
in process memory by default, in Redis when ``PORTAL_REDIS_URL`` is set so that every
worker and host shares one budget."""

from __future__ import annotations

import hashlib

import structlog
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from core.settings import Settings

log = structlog.get_logger("core.ratelimit")


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        if settings.redis_url:
            uri = (
                "async+" + settings.redis_url
                if not settings.redis_url.startswith("async+")
                else settings.redis_url
            )
        else:
            uri = "async+memory://"
        self.storage = storage_from_string(uri)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.limits: dict[str, RateLimitItem] = {
            "login": parse(settings.rate_limit_login),
            "token": parse(settings.rate_limit_token),
            "self_service": parse(settings.rate_limit_self_service),
            "username_check": parse(settings.rate_limit_username_check),
            "set_credentials": parse(settings.rate_limit_set_credentials),
        }

    async def allow(self, scope: str, *keys: str) -> bool:
        """Count one hit against every key (client address, account, email); refuse when
        any budget is spent. Keys are hashed so Redis never holds an address or email."""
        item = self.limits[scope]
        allowed = True
        for key in keys:
            hashed = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            if not await self.strategy.hit(item, scope, hashed):
                allowed = False
        if not allowed:
            # OWASP vocabulary excess_rate_limit_exceeded (SECURITY LOG-2); the keys are
            # addresses and emails, so only which budget ran out is logged.
            log.warning("rate_limit.exceeded", scope=scope)
        return allowed

    async def reset(self) -> None:
        await self.storage.reset()  # type: ignore[misc]
