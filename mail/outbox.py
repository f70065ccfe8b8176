"""Writing to the outbox: called inside the transaction that causes the mail, so a rolled
back change sends nothing and a committed one is never lost."""

from __future__ import annotations

from collections.abc import Sequence

from core.clock import utcnow
from mail.compose import Rendered
from models import OutboxMessage


def message(
    *,
    practice_id: int,
    patient_id: int | None,
    kind: str,
    to_addr: str,
    rendered: Rendered,
    link_id: int | None = None,
) -> OutboxMessage:
    now = utcnow()
    return OutboxMessage(
        practice_id=practice_id,
        patient_id=patient_id,
        link_id=link_id,
        kind=kind,
        to_addr=to_addr,
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html,
        next_attempt_at=now,
        created_at=now,
    )


async def enqueue(messages: Sequence[OutboxMessage]) -> None:
    if len(messages) == 1:
        await messages[0].save()
    elif messages:
        await OutboxMessage.bulk_create(list(messages), batch_size=1000)
