"""Long-lived collaborators built once per app from Settings and shared by requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.background import Background
from core.passwords import Hasher
from core.ratelimit import RateLimiter
from core.sealing import Sealer
from core.settings import Settings
from graph.live import LiveHub
from mail.dispatcher import Dispatcher
from mail.transports import Transport
from onboarding.delivery import record_delivery_outcome
from onboarding.webhook_worker import WebhookWorker


@dataclass
class Services:
    settings: Settings
    hasher: Hasher
    limiter: RateLimiter
    dispatcher: Dispatcher
    sealer: Sealer
    webhooks: WebhookWorker
    live: LiveHub
    background: Background = field(default_factory=Background)

    @classmethod
    def build(cls, settings: Settings, transport: Transport | None = None) -> Services:
        return cls(
            settings=settings,
            hasher=Hasher(
                concurrency=settings.hash_concurrency,
                nice=settings.hash_nice,
                queue_limit=settings.hash_queue_limit,
            ),
            limiter=RateLimiter(settings),
            dispatcher=Dispatcher(settings, transport, on_outcome=record_delivery_outcome),
            sealer=Sealer(
                settings.secret_key.get_secret_value(),
                "cursor",
                previous=(
                    settings.secret_key_previous.get_secret_value()
                    if settings.secret_key_previous
                    else None
                ),
            ),
            webhooks=WebhookWorker(settings),
            live=LiveHub(settings),
        )
