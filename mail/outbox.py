"""Writing to the outbox: called inside the transaction that causes the mail, so a rolled
back change sends nothing and a committed one is never lost."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

import orjson

from core.clock import utcnow
from mail.compose import Draft
from models import OutboxMessage, OutboxStatus
from models.bulk import insert_rows


@dataclass(frozen=True)
class Queued:
    """One message on its way into the outbox; field order is the INSERT's column order
    (``enqueue`` adds the instants)."""

    practice_id: int
    patient_id: int | None
    link_id: int | None
    kind: str
    to_addr: str
    params: str  # the draft's template variables as JSON
    channel: str = "email"  # or "sms": to_addr is then an E.164 number
    status: str = OutboxStatus.PENDING.value
    attempts: int = 0


COLUMNS = (
    ("practice_id", "int"),
    ("patient_id", "int"),
    ("link_id", "int"),
    ("kind", "text"),
    ("to_addr", "text"),
    ("params", "jsonb"),
    ("channel", "text"),
    ("status", "text"),
    ("attempts", "int"),
    ("next_attempt_at", "timestamptz"),
    ("created_at", "timestamptz"),
)
assert tuple(name for name, _ in COLUMNS[:-2]) == tuple(Queued.__dataclass_fields__)


def message(
    *,
    practice_id: int,
    patient_id: int | None,
    to_addr: str,
    draft: Draft,
    link_id: int | None = None,
    channel: str = "email",
) -> Queued:
    return Queued(
        practice_id=practice_id,
        patient_id=patient_id,
        link_id=link_id,
        kind=draft.kind,
        to_addr=to_addr,
        params=orjson.dumps(draft.params).decode(),
        channel=channel,
    )


_ROW = attrgetter(*Queued.__dataclass_fields__)


async def enqueue(messages: Sequence[Queued]) -> None:
    # Plain multi-row INSERTs: a bulk invitation queues 10,000 messages at once. The rows
    # are read with attrgetter, not dataclasses.astuple, which deep-copies every field
    # (0.6 s of a 10,000-message invitation, spent holding its locks). The messages of
    # one call are due and created at one instant: one parameter per column, where an
    # instant per message sent two arrays of 10,000 timestamps (about 15 ms of the
    # driver's encoding, with the locks held).
    now = utcnow()
    rows = [(*_ROW(m), now, now) for m in messages]
    await insert_rows(OutboxMessage._meta.db_table, COLUMNS, rows)


# Dispatchers that want to hear of new mail at once rather than at their next poll.
_listeners: set[Callable[[], None]] = set()


def subscribe(listener: Callable[[], None]) -> None:
    _listeners.add(listener)


def unsubscribe(listener: Callable[[], None]) -> None:
    _listeners.discard(listener)


def announce() -> None:
    """Called after the commit of a transaction that queued mail (the unit of work in
    ``onboarding/`` does it), so the mail leaves without waiting for a poll."""
    for listener in list(_listeners):
        listener()
