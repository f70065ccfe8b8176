"""One reminder per unused staff-sent link, with a fresh link, before it expires (SPEC 7.4).

Run periodically by the server (next to the mail dispatcher) and by ``portal
mail-worker``. Each reminder is claimed by a conditional UPDATE on the old link's
``reminded_at``, so any number of workers send it once.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.settings import Settings
from mail import outbox
from models import (
    INVITABLE_CHART_STATUSES,
    ActorType,
    LinkPurpose,
    LinkToken,
    PortalAccount,
    Practice,
)
from models.patient import lock_patients
from onboarding import audit
from onboarding.actor import Actor
from onboarding.invitations import invitation_message
from onboarding.links import issue_links

log = structlog.get_logger("onboarding.reminders")
SYSTEM = Actor(ActorType.SYSTEM, None, None, None, None)


async def send_due_reminders(settings: Settings, batch: int = 200) -> int:
    if settings.reminder_before_expiry_minutes <= 0:
        return 0
    now = utcnow()
    due = (
        await LinkToken.filter(
            purpose=LinkPurpose.INVITATION,
            is_reminder=False,
            reminded_at=None,
            used_at=None,
            revoked_at=None,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(minutes=settings.reminder_before_expiry_minutes),
        )
        .select_related("patient")
        .limit(batch)
    )
    sent = 0
    for link in due:
        patient = link.patient
        eligible = (
            patient.portal_enabled
            and patient.chart_status in INVITABLE_CHART_STATUSES
            and patient.email_key == link.sent_to.casefold()
        )
        async with in_transaction():
            await lock_patients([patient.id])
            claimed = await LinkToken.filter(
                id=link.id, reminded_at=None, used_at=None, revoked_at=None
            ).update(reminded_at=now)
            if not claimed or not eligible:
                continue
            has_password = await PortalAccount.filter(
                patient_id=patient.id, password_hash__isnull=False
            ).exists()
            practice = await Practice.get(id=link.practice_id)
            [fresh] = await issue_links(
                practice_id=practice.id,
                patients=[(patient.id, link.sent_to)],
                purpose=LinkPurpose.INVITATION,
                ttl=settings.staff_link_ttl,
                created_by=link.created_by_id,
            )
            await LinkToken.filter(id=fresh.link_id).update(is_reminder=True)
            await outbox.enqueue(
                [
                    invitation_message(
                        practice, patient, fresh, settings, reset=has_password, self_service=False
                    )
                ]
            )
            await audit.record(
                SYSTEM, "invitation.reminder_sent", patient_id=patient.id, practice_id=practice.id
            )
            sent += 1
    if sent:
        log.info("reminders.sent", count=sent)
    return sent
