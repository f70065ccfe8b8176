"""One place to read the time, so expiry tests can shift it with time-machine."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
