"""Structured logs (structlog), JSON in production, with the request id bound per request.

Nothing here logs request bodies or query strings: tokens and passwords travel in
GraphQL variables and must never reach a log line (SECURITY LOG-3)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog

from core.settings import Settings


class _CurrentStderr:
    """``sys.stderr`` as it is at each write, not as it was at configure time: loggers
    are cached on first use, and lines must follow a later redirection (a supervisor's
    pipe, a test's capture) instead of going to a stale stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(settings: Settings) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.is_production
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    # Never below INFO: the database client logs bound parameters at DEBUG.
    for name in ("tortoise", "tortoise.db_client", "aiosqlite", "asyncpg"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # httpx logs every webhook request's full URL at INFO, and a receiver's URL may
    # carry its own key; the delivery log (webhookDeliveries) is the record instead.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
