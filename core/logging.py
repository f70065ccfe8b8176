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


class _PortalHandler(logging.StreamHandler):
    pass


def configure_logging(settings: Settings) -> None:
    """structlog for our lines; the standard library's loggers (uvicorn, coredis, asyncpg,
    Tortoise) go through the same renderer, so production writes JSON only."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.is_production
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        # One write per line (PrintLogger's print() writes the line and its newline
        # apart: two system calls per request on an unbuffered stderr), still flushed.
        logger_factory=structlog.WriteLoggerFactory(cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=True,
    )
    handler = _PortalHandler(cast(TextIO, _CurrentStderr()))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    # Replace plain stream handlers (ours from an earlier call, basicConfig's); keep
    # other kinds (a test runner's capture).
    root.handlers = [
        h
        for h in root.handlers
        if type(h) is not logging.StreamHandler and not isinstance(h, _PortalHandler)
    ]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # uvicorn installs handlers of its own (plain text) unless started with
    # log_config=None; send its lines through ours instead.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # Except its access line: PortalMiddleware writes one per request (path, never the
    # query string, with the request id). `portal serve` passes access_log=False, but
    # uvicorn applies that before the app is imported and this function ran; a
    # propagating uvicorn.access then had our root handler, so uvicorn logged every
    # request a second time with its query string, through the standard library's
    # logging (about 3% of an Onboarding page's CPU, issue 15). Without handlers and
    # without propagation, uvicorn's protocol skips the line altogether, as uvicorn's
    # own access_log=False does.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    # Never below INFO: the database client logs bound parameters at DEBUG.
    # httpx logs whole URLs (query strings) at INFO.
    for name in ("tortoise", "tortoise.db_client", "aiosqlite", "asyncpg", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # httpx logs every webhook request's full URL at INFO, and a receiver's URL may
    # carry its own key; the delivery log (webhookDeliveries) is the record instead.
    # coredis logs each connection retry at INFO; a Redis that is down is reported once,
    # by the rate limiter or the start-up check, naming the setting.
    for name in ("httpx", "httpcore", "coredis"):
        logging.getLogger(name).setLevel(logging.WARNING)
