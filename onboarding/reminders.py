"""One reminder per unused staff-sent link, with a fresh link, before it expires (SPEC 7.4).

Run periodically by the server (next to the mail dispatcher) and by ``portal
mail-worker``. Each reminder is claimed by a conditional UPDATE on the old link's
``reminded_at``, so any number of workers send it once.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from core.clock import utcnow
from core.link_keys import LinkKeys
from core.settings import Settings
from models import LinkPurpose, LinkToken
from onboarding import reach
from onboarding.actor import SYSTEM
from onboarding.invitations import invitation_message
from onboarding.unit_of_work import patient_change, portal_usable

log = structlog.get_logger("onboarding.reminders")


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
        .limit(batch)
    )
    sent = 0
    for link in due:
        async with patient_change(SYSTEM, [link.patient_id]) as change:
            claimed = await LinkToken.filter(
                id=link.id, reminded_at=None, used_at=None, revoked_at=None
            ).update(reminded_at=now)
            patient = change.patient(link.patient_id)
            # Judged under the lock: a patient disabled, or whose address changed, since
            # the link was sent gets no reminder.
            if (
                not claimed
                or patient is None
                or not portal_usable(patient)
                or not reach.still_reaches(patient, link.sent_to)
            ):
                continue
            account = change.account(patient.id)
            [fresh] = await change.issue_links(
                [(patient.id, link.sent_to)],
                purpose=LinkPurpose.INVITATION,
                ttl=settings.staff_link_ttl,
                created_by=link.created_by_id,
                keys=LinkKeys.from_settings(settings),
                is_reminder=True,
            )
            practice = await change.practice()
            await change.queue(
                [
                    invitation_message(
                        practice,
                        patient,
                        fresh,
                        settings,
                        reset=account is not None and account.password_hash is not None,
                        self_service=False,
                        reminder=True,
                    )
                ]
            )
            await change.record(
                SYSTEM, "invitation.reminder_sent", patient_id=patient.id, practice_id=practice.id
            )
            sent += 1
    if sent:
        log.info("reminders.sent", count=sent)
    return sent
