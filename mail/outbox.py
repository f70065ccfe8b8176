"""Writing to the outbox: called inside the transaction that causes the mail, so a rolled
back change sends nothing and a committed one is never lost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, field
from datetime import datetime

from core.clock import utcnow
from mail.compose import Rendered
from models import OutboxMessage, OutboxStatus
from models.bulk import insert_rows


@dataclass(frozen=True)
class Queued:
    """One message on its way into the outbox; field order is the INSERT's column order."""

    practice_id: int
    patient_id: int | None
    link_id: int | None
    kind: str
    to_addr: str
    subject: str
    body_text: str
    body_html: str
    status: str = OutboxStatus.PENDING.value
    attempts: int = 0
    next_attempt_at: datetime = field(default_factory=utcnow)
    created_at: datetime = field(default_factory=utcnow)


COLUMNS = (
    ("practice_id", "int"),
    ("patient_id", "int"),
    ("link_id", "int"),
    ("kind", "text"),
    ("to_addr", "text"),
    ("subject", "text"),
    ("body_text", "text"),
    ("body_html", "text"),
    ("status", "text"),
    ("attempts", "int"),
    ("next_attempt_at", "timestamptz"),
    ("created_at", "timestamptz"),
)
assert tuple(name for name, _ in COLUMNS) == tuple(Queued.__dataclass_fields__)


def message(
    *,
    practice_id: int,
    patient_id: int | None,
    kind: str,
    to_addr: str,
    rendered: Rendered,
    link_id: int | None = None,
) -> Queued:
    return Queued(
        practice_id=practice_id,
        patient_id=patient_id,
        link_id=link_id,
        kind=kind,
        to_addr=to_addr,
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html,
    )


async def enqueue(messages: Sequence[Queued]) -> None:
    # Plain multi-row INSERTs: a bulk invitation queues 10,000 messages at once.
    await insert_rows(OutboxMessage._meta.db_table, COLUMNS, [astuple(m) for m in messages])
