"""Self-service from the portal login screen (SPEC 2.1): set-up/reset links and username
reminders after an identity check.

The caller answers the same payload before any of this runs (SECURITY ENUM-1/ENUM-2):
these functions execute after the response is decided, so neither the body nor the
timing says whether a chart matched, and mail work never delays the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.settings import Settings
from mail import compose, outbox
from models import (
    INVITABLE_CHART_STATUSES,
    LinkPurpose,
    LinkToken,
    OutboxMessage,
    Patient,
    PortalAccount,
    Practice,
)
from onboarding import audit
from onboarding.actor import Actor
from onboarding.invitations import invitation_message
from onboarding.links import issue_links

NO_US_ZIP = "00000"
_US_ZIP = re.compile(r"^\d{5}(-?\d{4})?$")


@dataclass(frozen=True)
class IdentityClaim:
    email: str
    last_name: str
    date_of_birth: date
    zip_code: str


def _name(value: str) -> str:
    return " ".join(value.split()).casefold()


def zip_matches(on_file: str, typed: str) -> bool:
    if on_file.strip() == NO_US_ZIP:  # the clinic's "no US ZIP" convention
        return True
    on_file_c, typed_c = on_file.strip(), typed.strip()
    if _US_ZIP.match(on_file_c):
        return bool(_US_ZIP.match(typed_c)) and typed_c[:5] == on_file_c[:5]
    squash = lambda v: "".join(v.split()).casefold()  # noqa: E731
    return squash(on_file_c) == squash(typed_c) != ""


async def find_claimed_patients(claim: IdentityClaim) -> list[Patient]:
    """Charts that satisfy the claim and are eligible, at most one per practice. A
    practice whose address is on more than one chart yields none (SPEC 2.1)."""
    email_key = claim.email.strip().casefold()
    # A NUL byte is in no address, and PostgreSQL refuses one as a parameter.
    if not email_key or len(email_key) > 254 or "\x00" in email_key:
        return []
    candidates = await Patient.filter(email_key=email_key)
    by_practice: dict[int, list[Patient]] = {}
    for p in candidates:
        by_practice.setdefault(p.practice_id, []).append(p)  # type: ignore[attr-defined]
    matches = []
    for charts in by_practice.values():
        if len(charts) != 1:
            continue
        p = charts[0]
        if (
            p.chart_status in INVITABLE_CHART_STATUSES
            and p.portal_enabled
            and p.zip_code
            and p.date_of_birth == claim.date_of_birth
            and _name(p.last_name) == _name(claim.last_name)
            and zip_matches(p.zip_code, claim.zip_code)
        ):
            matches.append(p)
    return matches


async def process_self_reset(actor: Actor, claim: IdentityClaim, settings: Settings) -> int:
    """Issue a self-service link to every matching chart; returns how many were queued
    (for tests and logs only, never for the response)."""
    queued = 0
    cooldown = utcnow() - timedelta(minutes=settings.self_service_cooldown_minutes)
    for patient in await find_claimed_patients(claim):
        async with in_transaction():
            # Lock the chart, then look: concurrent requests for one patient queue here, so
            # a burst cannot slip several links past the cooldown (SECURITY ENUM-3).
            await Patient.filter(id=patient.id).select_for_update().first()
            recent = await LinkToken.filter(
                patient_id=patient.id, purpose=LinkPurpose.SELF_SERVICE, created_at__gt=cooldown
            ).exists()
            outcome = "throttled" if recent else "queued"
            if not recent:
                has_password = await PortalAccount.filter(
                    patient_id=patient.id, password_hash__isnull=False
                ).exists()
                practice = await Practice.get(id=patient.practice_id)  # type: ignore[attr-defined]
                links = await issue_links(
                    practice_id=practice.id,
                    patients=[(patient.id, patient.email or "")],
                    purpose=LinkPurpose.SELF_SERVICE,
                    ttl=settings.self_service_link_ttl,
                    created_by=None,
                )
                await outbox.enqueue(
                    [
                        invitation_message(
                            practice,
                            patient,
                            links[0],
                            settings,
                            reset=has_password,
                            self_service=True,
                        )
                    ]
                )
                queued += 1
            await audit.record(
                actor,
                "self_reset.requested",
                patient_id=patient.id,
                practice_id=patient.practice_id,  # type: ignore[attr-defined]
                outcome=outcome,
            )
    if not queued:
        # Recorded without a patient: the request itself is an event (LOG-2), and
        # tying a non-match to a chart would leak who was probed.
        await audit.record(actor, "self_reset.requested", outcome="no_link")
    return queued


async def process_username_reminder(actor: Actor, claim: IdentityClaim, settings: Settings) -> int:
    queued = 0
    cooldown = utcnow() - timedelta(minutes=settings.self_service_cooldown_minutes)
    for patient in await find_claimed_patients(claim):
        account = await PortalAccount.filter(patient_id=patient.id).first()
        if account is None:
            continue
        practice = await Practice.get(id=patient.practice_id)  # type: ignore[attr-defined]
        draft = compose.username_reminder(
            practice_name=practice.name,
            first_name=patient.first_name,
            username=account.username,
        )
        async with in_transaction():
            # As for links: lock the chart before the cooldown check (SECURITY ENUM-3).
            await Patient.filter(id=patient.id).select_for_update().first()
            recent = await OutboxMessage.filter(
                patient_id=patient.id, kind="username_reminder", created_at__gt=cooldown
            ).exists()
            if not recent:
                await outbox.enqueue(
                    [
                        outbox.message(
                            practice_id=practice.id,
                            patient_id=patient.id,
                            to_addr=patient.email or "",
                            draft=draft,
                        )
                    ]
                )
                await audit.record(
                    actor,
                    "username_reminder.requested",
                    patient_id=patient.id,
                    practice_id=practice.id,
                )
                queued += 1
    if not queued:
        await audit.record(actor, "username_reminder.requested", outcome="no_mail")
    return queued
