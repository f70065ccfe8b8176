"""What a delivery outcome means for the link a message carried (SPEC 7.3).

The mail dispatcher only knows outbox rows; it reports each message's outcome through
the callback it is given (``record_delivery_outcome``, injected by whoever starts a
dispatcher: the app's lifespan via ``graph.services`` and ``portal mail-worker``), so
every write to a patient's links stays in ``onboarding/``.
"""

from __future__ import annotations

from mail.dispatcher import DeliveryOutcome
from models import DeliveryStatus, LinkToken, RevokeReason
from onboarding import events
from onboarding.actor import SYSTEM
from onboarding.unit_of_work import patient_change


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
        # Through the unit of work (delivery_status alone would need no patient lock):
        # the EMR's invitation.delivered event takes its place in the patient's order.
        ids = [patient_id] if patient_id is not None else []
        async with patient_change(SYSTEM, ids) as change:
            await LinkToken.filter(id=link_id).update(
                delivery_status=DeliveryStatus.SENT, delivery_detail=reason
            )
            if patient_id is not None and change.patient(patient_id) is not None:
                await change.emit(events.INVITATION_DELIVERED, ids)
        return
    if outcome is DeliveryOutcome.FAILED:
        ids = [patient_id] if patient_id is not None else []
        async with patient_change(SYSTEM, ids) as change:
            await LinkToken.filter(id=link_id).update(
                delivery_status=DeliveryStatus.FAILED, delivery_detail=reason
            )
            # A link that never arrived must not stay usable (SPEC 7.3).
            await change.revoke_link(link_id, RevokeReason.UNDELIVERABLE)
            patient = change.patient(patient_id) if patient_id is not None else None
            if patient is not None:
                await change.record(
                    SYSTEM,
                    "invitation.undeliverable",
                    patient_id=patient.id,
                    practice_id=patient.practice_id,
                    outcome="failure",
                )
    # RETRY: the link stays QUEUED; nothing to record on it.
