"""What a delivery outcome means for the link a message carried (SPEC 7.3).

The mail dispatcher only knows outbox rows; it reports each message's outcome through
the callback it is given (``record_delivery_outcome``, injected by whoever starts a
dispatcher: the app's lifespan via ``graph.services`` and ``portal mail-worker``), so
every write to a patient's links stays in ``onboarding/``.
"""

from __future__ import annotations

from core.clock import utcnow
from mail.dispatcher import DeliveryOutcome
from models import DeliveryStatus, LinkToken, RevokeReason
from models.patient import lock_patients


async def record_delivery_outcome(
    *,
    message_id: int,
    patient_id: int | None,
    link_id: int | None,
    outcome: DeliveryOutcome,
    reason: str | None,
) -> None:
    """Called by the dispatcher inside the transaction that settles outbox row
    ``message_id``, before the row itself is written. ``reason`` is the server's reply
    or why the message was given up; it never holds the address or the link."""
    del message_id  # the link is what matters here; the id is kept for audit/logging
    if link_id is None:
        return
    if outcome is DeliveryOutcome.DELIVERED:
        # delivery_status is not a trigger-copied input (migration 0006), so this
        # update does not touch the patient row and needs no patient lock.
        await LinkToken.filter(id=link_id).update(delivery_status=DeliveryStatus.SENT)
        return
    if outcome is DeliveryOutcome.FAILED:
        # Revoking changes a trigger-copied input: lock the patient first, as every
        # change to a patient's links does (models.patient.lock_patients).
        if patient_id is not None:
            await lock_patients([patient_id])
        await LinkToken.filter(id=link_id).update(
            delivery_status=DeliveryStatus.FAILED, delivery_detail=reason
        )
        # A link that never arrived must not stay usable (SPEC 7.3).
        await LinkToken.filter(id=link_id, used_at=None, revoked_at=None).update(
            revoked_at=utcnow(), revoke_reason=RevokeReason.UNDELIVERABLE
        )
    # RETRY: the link stays QUEUED; nothing to record on it.
