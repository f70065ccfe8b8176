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
    """Patients whose first staff invitation falls in [start, end] (UTC days); activated
    means they chose their own password through a link (at any time since)."""
    low, high = _bounds(start, end)
    practice = reader.practice_id
    sent = await LinkToken.filter(
        practice_id=practice,
        purpose=LinkPurpose.INVITATION,
        created_at__gte=low,
        created_at__lt=high,
    ).count()
    firsts = {
        row["patient_id"]: row["first"]
        for row in await LinkToken.filter(practice_id=practice, purpose=LinkPurpose.INVITATION)
        .annotate(first=Min("created_at"))
        .group_by("patient_id")
        .values("patient_id", "first")
    }
    cohort = {pid: _aware(first) for pid, first in firsts.items() if low <= _aware(first) < high}
    activations = (
        {
            row["patient_id"]: row["activated"]
            for row in await LinkToken.filter(
                practice_id=practice, patient_id__in=list(cohort), used_at__not_isnull=True
            )
            .annotate(activated=Min("used_at"))
            .group_by("patient_id")
            .values("patient_id", "activated")
        }
        if cohort
        else {}
    )
    hours = [(_aware(activations[pid]) - cohort[pid]).total_seconds() / 3600 for pid in activations]
    return Funnel(
        status_counts=await reader.status_counts(None),
        invitations_sent=sent,
        patients_invited=len(cohort),
        patients_activated=len(activations),
        activation_rate=len(activations) / len(cohort) if cohort else None,
        median_hours_to_activation=statistics.median(hours) if hours else None,
    )


def _aware(value: datetime | str) -> datetime:
    # Aggregates come back as text on SQLite.
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
