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

from core.clock import utcnow
from core.link_keys import LinkKeys
from core.settings import Settings
from mail import compose, outbox
from models import LinkPurpose, LinkToken, OutboxMessage, Patient
from onboarding import audit, checkpoints
from onboarding.actor import Actor
from onboarding.invitations import invitation_message
from onboarding.unit_of_work import patient_change, portal_usable

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


def satisfies(patient: Patient, claim: IdentityClaim) -> bool:
    """Does this chart answer the claim, and may it use the portal?"""
    return bool(
        portal_usable(patient)
        and patient.email_key == claim.email.strip().casefold()
        and patient.zip_code
        and patient.date_of_birth == claim.date_of_birth
        and _name(patient.last_name) == _name(claim.last_name)
        and zip_matches(patient.zip_code, claim.zip_code)
    )


async def find_claimed_patients(claim: IdentityClaim) -> list[int]:
    """Charts that satisfy the claim and are eligible, at most one per practice. A
    practice whose address is on more than one chart yields none (SPEC 2.1). A first
    look, outside any lock; the unit of work checks the claim again under it."""
    email_key = claim.email.strip().casefold()
    # A NUL byte is in no address, and PostgreSQL refuses one as a parameter.
    if not email_key or len(email_key) > 254 or "\x00" in email_key:
        return []
    candidates = await Patient.filter(email_key=email_key)
    by_practice: dict[int, list[Patient]] = {}
    for p in candidates:
        by_practice.setdefault(p.practice_id, []).append(p)
    return [
        charts[0].id
        for charts in by_practice.values()
        if len(charts) == 1 and satisfies(charts[0], claim)
    ]


async def process_self_reset(actor: Actor, claim: IdentityClaim, settings: Settings) -> int:
    """Issue a self-service link to every matching chart; returns how many were queued
    (for tests and logs only, never for the response)."""
    queued = 0
    cooldown = utcnow() - timedelta(minutes=settings.self_service_cooldown_minutes)
    for patient_id in await find_claimed_patients(claim):
        await checkpoints.reached("self_reset.before_lock")
        async with patient_change(actor, [patient_id]) as change:
            patient = change.patient(patient_id)
            # Under the lock: the address the link goes to is the one on file now, and
            # a burst cannot slip several links past the cooldown (SECURITY ENUM-3).
            if patient is None or not satisfies(patient, claim):
                continue
            recent = await LinkToken.filter(
                patient_id=patient.id, purpose=LinkPurpose.SELF_SERVICE, created_at__gt=cooldown
            ).exists()
            if not recent:
                account = change.account(patient_id)
                links = await change.issue_links(
                    [(patient.id, patient.email or "")],
                    purpose=LinkPurpose.SELF_SERVICE,
                    ttl=settings.self_service_link_ttl,
                    created_by=None,
                    keys=LinkKeys.from_settings(settings),
                )
                await change.queue(
                    [
                        invitation_message(
                            await change.practice(),
                            patient,
                            links[0],
                            settings,
                            reset=account is not None and account.password_hash is not None,
                            self_service=True,
                        )
                    ]
                )
                queued += 1
            await change.record(
                actor,
                "self_reset.requested",
                patient_id=patient.id,
                practice_id=patient.practice_id,
                outcome="throttled" if recent else "queued",
            )
    if not queued:
        # Recorded without a patient: the request itself is an event (LOG-2), and
        # tying a non-match to a chart would leak who was probed.
        await audit.record(actor, "self_reset.requested", outcome="no_link")
    return queued


async def process_username_reminder(actor: Actor, claim: IdentityClaim, settings: Settings) -> int:
    queued = 0
    cooldown = utcnow() - timedelta(minutes=settings.self_service_cooldown_minutes)
    for patient_id in await find_claimed_patients(claim):
        async with patient_change(actor, [patient_id]) as change:
            patient = change.patient(patient_id)
            account = change.account(patient_id)
            # As for links: decided under the lock (SECURITY ENUM-3).
            if patient is None or account is None or not satisfies(patient, claim):
                continue
            recent = await OutboxMessage.filter(
                patient_id=patient.id, kind="username_reminder", created_at__gt=cooldown
            ).exists()
            if recent:
                continue
            practice = await change.practice()
            draft = compose.username_reminder(practice, patient, username=account.username)
            await change.queue(
                [
                    outbox.message(
                        practice_id=practice.id,
                        patient_id=patient.id,
                        to_addr=patient.email or "",
                        draft=draft,
                    )
                ]
            )
            await change.record(
                actor,
                "username_reminder.requested",
                patient_id=patient.id,
                practice_id=practice.id,
            )
            queued += 1
    if not queued:
        await audit.record(actor, "username_reminder.requested", outcome="no_mail")
    return queued
