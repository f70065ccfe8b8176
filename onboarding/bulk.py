"""Shared shape of the bulk staff actions: one result per requested id, in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from models import Patient
from onboarding.errors import ErrorCode, Problem
from onboarding.idempotency import Idempotency
from onboarding.listing import OnboardingFilter, PatientReader
from onboarding.unit_of_work import read_bulk_rows
from onboarding.validation import parse_id


@dataclass(frozen=True)
class BulkRequest:
    """Which patients a bulk action targets (ids, or the Onboarding Tool's filter), and
    how: ``dry_run`` reports without acting; ``idempotency_key`` acts at most once."""

    patient_ids: Sequence[str] | None = None
    filter: OnboardingFilter | None = None
    dry_run: bool = False
    idempotency_key: str | None = None

    def fingerprint_data(self, **extra: Any) -> dict[str, Any]:
        return {
            "ids": list(self.patient_ids) if self.patient_ids is not None else None,
            "filter": repr(self.filter),
            **extra,
        }


async def requested_ids(
    practice_id: int, request: BulkRequest, *, limit: int, temporary_password_ttl: timedelta
) -> tuple[list[str], list[Problem]]:
    """The ids the request names, or the problem with it (nothing acted on)."""
    if (request.patient_ids is None) == (request.filter is None):
        return [], [
            Problem(ErrorCode.INVALID_INPUT, "give either patientIds or filter", ("patientIds",))
        ]
    if request.patient_ids is not None:
        if problem := too_many(len(request.patient_ids), limit):
            return [], [problem]
        return list(request.patient_ids), []
    reader = PatientReader(practice_id, temporary_password_ttl)
    ids = await reader.ids(request.filter, limit + 1)
    if len(ids) > limit:
        return [], [
            Problem(
                ErrorCode.INVALID_INPUT,
                f"the filter selects more than {limit} patients; narrow it",
                ("filter",),
            )
        ]
    return [str(i) for i in ids], []


async def still_selected(
    practice_id: int, request: BulkRequest, raw_ids: Sequence[str], settings: Any
) -> list[str]:
    """Call under the lock: of the ids a filter chose before it, those it still selects.
    A patient another request moved out of the filter meanwhile (given credentials by
    hand, so no longer NOT_INVITED) is left out, as if the filter had been read after
    that change. Ids named by the request are all kept: their rows are judged as such."""
    if request.filter is None:
        return list(raw_ids)
    reader = PatientReader(practice_id, timedelta(days=settings.temporary_password_ttl_days))
    locked = parse_ids(raw_ids)
    keep = set(await reader.ids(request.filter, len(locked), within=locked))
    return [r for r in raw_ids if parse_id(r) in keep]


async def twin_outcome(
    idempotency: Idempotency | None, error: Exception, from_json: Callable[[dict[str, Any]], Any]
) -> BulkOutcome:
    """After an IntegrityError: a request with the same key committed first. A twin is
    answered as it was (nothing done twice); a different request with that key is
    refused as it is when it comes second (an empty success would claim rows it never
    acted on). Any other integrity error is not the key's and goes on up."""
    if idempotency is None:
        raise error
    stored, problem = await idempotency.stored()
    if problem:
        return BulkOutcome(problems=[problem])
    if stored is None:
        raise error
    return BulkOutcome(results=[from_json(r) for r in stored])


def idempotency_for(
    practice_id: int, operation: str, request: BulkRequest, **extra: Any
) -> Idempotency | None:
    if request.idempotency_key is None or request.dry_run:
        return None
    return Idempotency.of(
        practice_id, operation, request.idempotency_key, request.fingerprint_data(**extra)
    )


@dataclass
class RowResult:
    requested_id: str
    patient_id: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.patient_id is not None and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "requested_id": self.requested_id,
            "patient_id": self.patient_id,
            "problems": [
                {"code": p.code.value, "message": p.message, "field": list(p.field or [])}
                for p in self.problems
            ],
        }

    @staticmethod
    def problems_from_json(data: dict[str, Any]) -> list[Problem]:
        return [
            Problem(ErrorCode(p["code"]), p["message"], tuple(p["field"]) or None)
            for p in data["problems"]
        ]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowResult:
        return cls(data["requested_id"], data["patient_id"], cls.problems_from_json(data))


@dataclass
class BulkOutcome:
    """Per-row results, or request-level problems (then nothing was done)."""

    results: list[Any] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def parse_ids(raw_ids: Sequence[str]) -> list[int]:
    return list({pid for pid in (parse_id(r) for r in raw_ids) if pid is not None})


def match_rows(
    raw_ids: Sequence[str], patients: dict[int, Patient], field_name: str = "patientIds"
) -> list[RowResult]:
    """One result per requested id, in order, against the practice's patients that were
    found. Ids of other practices read exactly like ids that do not exist (tenancy)."""
    results = [RowResult(raw) for raw in raw_ids]
    for index, result in enumerate(results):
        pid = parse_id(result.requested_id)
        if pid is None or pid not in patients:
            result.problems.append(
                Problem(ErrorCode.NOT_FOUND, "no such patient", (field_name, str(index)))
            )
        else:
            result.patient_id = pid
    return results


async def resolve_patients(
    practice_id: int, raw_ids: Sequence[str], field_name: str = "patientIds"
) -> tuple[list[RowResult], dict[int, Patient]]:
    """Look up the ids of one practice in one query, outside any lock: for a dry run's
    report. Acting reads them again under the lock (``patient_change``)."""
    wanted = parse_ids(raw_ids)
    # Only the columns the bulk actions read, as plain rows: 10,000 full model instances
    # would spend most of a bulk invitation parsing timestamps nobody looks at.
    patients = await read_bulk_rows(wanted, practice_id, lock=False) if wanted else {}
    return match_rows(raw_ids, patients, field_name), patients


def too_many(count: int, limit: int, field_name: str = "patientIds") -> Problem | None:
    if count > limit:
        return Problem(
            ErrorCode.INVALID_INPUT, f"at most {limit} patients per request", (field_name,)
        )
    return None


async def start(
    practice_id: int,
    request: BulkRequest,
    settings: Any,
    *,
    idempotency: Idempotency | None,
    from_json: Callable[[dict[str, Any]], Any],
) -> tuple[list[str], BulkOutcome | None]:
    """The shared opening of every bulk action: the earlier answer when the idempotency
    key was seen (or misused), else the ids the request names (or why it names none).
    Returns (ids, None) to go on, or ([], outcome) to answer at once."""
    if idempotency:
        if problem := idempotency.problem():
            return [], BulkOutcome(problems=[problem])
        stored, problem = await idempotency.stored()
        if problem:
            return [], BulkOutcome(problems=[problem])
        if stored is not None:
            return [], BulkOutcome(results=[from_json(r) for r in stored])
    raw_ids, problems = await requested_ids(
        practice_id,
        request,
        limit=settings.max_bulk_ids,
        temporary_password_ttl=timedelta(days=settings.temporary_password_ttl_days),
    )
    if problems:
        return [], BulkOutcome(problems=problems)
    return raw_ids, None
