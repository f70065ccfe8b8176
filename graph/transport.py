"""uvicorn's HTTP protocol with read deadlines and connection caps (issue 10, item 2).

uvicorn has a keep-alive timeout between requests but none while a request's headers or
body arrive, and no cap on open connections: 20,000 half-sent requests held 20,000 file
descriptors until ``/healthz`` failed. Here each connection must deliver its headers
within ``PORTAL_HEADER_TIMEOUT_SECONDS`` and its body within
``PORTAL_BODY_TIMEOUT_SECONDS``, else it is closed (408 when nothing was answered yet);
a process keeps at most ``PORTAL_MAX_CONNECTIONS`` connections, and one client address
at most ``PORTAL_MAX_CONNECTIONS_PER_ADDRESS``: beyond them a new connection is closed
as soon as it is accepted, so one slow client cannot take the whole server.

``portal serve`` names this class to uvicorn as ``http="graph.transport:PortalHttpProtocol"``
(a string, so worker processes import it themselves); the limits come from the
environment like every other setting.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import lru_cache
from typing import Any, ClassVar

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import Settings

log = structlog.get_logger("http")

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n"
    b"cache-control: no-store\r\n\r\n"
)


@lru_cache(maxsize=1)
def transport_settings() -> Settings:
    return Settings()


class PortalHttpProtocol(HttpToolsProtocol):
    # Open connections per client address in this process.
    per_address: ClassVar[Counter[str]] = Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = transport_settings()
        self.header_timeout = settings.header_timeout_seconds
        self.body_timeout = settings.body_timeout_seconds
        self.max_connections = settings.max_connections
        self.max_per_address = settings.max_connections_per_address
        self.read_deadline: asyncio.TimerHandle | None = None
        self.address: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.address = self.client[0] if self.client else None
        if self.address is not None:
            self.per_address[self.address] += 1
        over_total = len(self.connections) > self.max_connections
        over_address = (
            self.max_per_address > 0
            and self.address is not None
            and self.per_address[self.address] > self.max_per_address
        )
        if over_total or over_address:
            log.info(
                "http.connection_refused",
                reason="max_connections" if over_total else "max_connections_per_address",
            )
            transport.abort()
            return
        self._arm("headers", self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.address is not None:
            self.per_address[self.address] -= 1
            if self.per_address[self.address] <= 0:
                del self.per_address[self.address]
            self.address = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm("headers", self.header_timeout)

    def on_headers_complete(self) -> None:
        self._arm("body", self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self.read_deadline = self.loop.call_later(seconds, self._read_timed_out, phase)

    def _disarm(self) -> None:
        if self.read_deadline is not None:
            self.read_deadline.cancel()
            self.read_deadline = None

    def _read_timed_out(self, phase: str) -> None:
        self.read_deadline = None
        if self.transport.is_closing():
            return
        log.info("http.read_timeout", phase=phase)
        if phase == "headers" or self.cycle is None or not self.cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE)
        # The application (if the body phase started it) sees a disconnect.
        self.transport.close()
