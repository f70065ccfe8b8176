"""Shared shape of the bulk staff actions: one result per requested id, in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from models import Patient
from onboarding.errors import ErrorCode, Problem
from onboarding.validation import parse_id


@dataclass
class RowResult:
    requested_id: str
    patient_id: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.patient_id is not None and not self.problems


async def resolve_patients(
    practice_id: int, raw_ids: Sequence[str], field_name: str = "patientIds"
) -> tuple[list[RowResult], dict[int, Patient]]:
    """Look up the ids of one practice in one query. Ids of other practices read exactly
    like ids that do not exist (tenancy)."""
    results = [RowResult(raw) for raw in raw_ids]
    wanted = {pid for pid in (parse_id(r) for r in raw_ids) if pid is not None}
    patients = (
        {p.id: p for p in await Patient.filter(practice_id=practice_id, id__in=list(wanted))}
        if wanted
        else {}
    )
    for index, result in enumerate(results):
        pid = parse_id(result.requested_id)
        if pid is None or pid not in patients:
            result.problems.append(
                Problem(ErrorCode.NOT_FOUND, "no such patient", (field_name, str(index)))
            )
        else:
            result.patient_id = pid
    return results, patients


def too_many(count: int, limit: int, field_name: str = "patientIds") -> Problem | None:
    if count > limit:
        return Problem(
            ErrorCode.INVALID_INPUT, f"at most {limit} patients per request", (field_name,)
        )
    return None
