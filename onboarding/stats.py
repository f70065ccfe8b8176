"""The onboarding funnel (SPEC 7.5): where the practice's patients stand, and how the
invitations sent in a date range turned into activated accounts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tortoise.functions import Min

from models import LinkPurpose, LinkToken
from onboarding.listing import PatientReader
from onboarding.status import PortalStatus


@dataclass(frozen=True)
class Funnel:
    status_counts: dict[PortalStatus, int]
    invitations_sent: int
    patients_invited: int
    patients_activated: int
    activation_rate: float | None
    median_hours_to_activation: float | None


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )


async def funnel(reader: PatientReader, start: date, end: date) -> Funnel:
    """The definitions are the README's ("Onboarding statistics"):

    - invited: patients whose first staff invitation (reminders are not staff
      invitations) was created in [start, end], whole UTC days, end included;
    - activated: of those, patients who redeemed a link (any: staff, reminder or
      self-service) at or after that first invitation, at any time up to now; a
      redemption before it was not an answer to an invitation and does not count;
    - hours to activation: from the first staff invitation to the first redemption
      after it, so never negative.
    """
    low, high = _bounds(start, end)
    practice = reader.practice_id
    staff_links = LinkToken.filter(
        practice_id=practice, purpose=LinkPurpose.INVITATION, is_reminder=False
    )
    sent = await staff_links.filter(created_at__gte=low, created_at__lt=high).count()
    firsts = {
        row["patient_id"]: row["first"]
        for row in await staff_links.annotate(first=Min("created_at"))
        .group_by("patient_id")
        .values("patient_id", "first")
    }
    cohort = {pid: _aware(first) for pid, first in firsts.items() if low <= _aware(first) < high}
    redemptions: dict[int, datetime] = {}
    if cohort:
        used = await LinkToken.filter(
            practice_id=practice, patient_id__in=list(cohort), used_at__not_isnull=True
        ).values_list("patient_id", "used_at")
        for pid, used_at in used:
            moment = _aware(used_at)
            if moment >= cohort[pid] and (pid not in redemptions or moment < redemptions[pid]):
                redemptions[pid] = moment
    hours = [(redemptions[pid] - cohort[pid]).total_seconds() / 3600 for pid in redemptions]
    return Funnel(
        status_counts=await reader.status_counts(None),
        invitations_sent=sent,
        patients_invited=len(cohort),
        patients_activated=len(redemptions),
        activation_rate=len(redemptions) / len(cohort) if cohort else None,
        median_hours_to_activation=statistics.median(hours) if hours else None,
    )


def _aware(value: datetime | str) -> datetime:
    # Aggregates come back as text on SQLite.
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
