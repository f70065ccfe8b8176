"""Pieces several mutations share: reloading patients for payloads, bulk result rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import strawberry

from core.unset import UNSET
from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import requested_id
from graph.types.onboarding import OnboardingFilter, _fields
from graph.types.patient import Patient
from onboarding.bulk import BulkRequest, RowResult
from onboarding.listing import PatientReader


def given(value: object) -> object:
    """An input field the client left out is core.unset.UNSET to the domain."""
    return UNSET if value is strawberry.UNSET else value


def selects_patient(info: Info) -> bool:
    """Does the document ask for ``results { patient { ... } }``? A 10,000-row bulk
    answer that asks only for ids and errors then skips reading 10,000 patients with
    their status, account and link (the Onboarding Tool's row statement) after the
    change."""
    raw = info._raw_info
    top = _fields((f.selection_set for f in raw.field_nodes), raw.fragments)
    results = _fields(top.get("results", []), raw.fragments)
    return "patient" in results


async def load_patients(info: Info, ids: Sequence[int]) -> dict[int, Patient]:
    ctx = info.context
    reader = PatientReader(
        ctx.practice_id, timedelta(days=ctx.settings.temporary_password_ttl_days)
    )
    return {pid: Patient.from_row(row) for pid, row in (await reader.by_ids(list(ids))).items()}


@strawberry.type(description="The outcome for one requested patient of a bulk action.")
class PatientResult:
    requested_id: strawberry.ID
    patient: Patient | None
    user_errors: list[UserError]


async def bulk_patients(info: Info, rows: Sequence[RowResult]) -> dict[int, Patient]:
    """The patients of a bulk answer's rows, when the document asks for them."""
    if not selects_patient(info):
        return {}
    return await load_patients(info, [r.patient_id for r in rows if r.patient_id])


async def patient_results(info: Info, rows: Sequence[RowResult]) -> list[PatientResult]:
    patients = await bulk_patients(info, rows)
    return [
        PatientResult(
            requested_id=requested_id(info, r.requested_id, r.patient_id),
            patient=patients.get(r.patient_id) if r.patient_id else None,
            user_errors=user_errors(r.problems),
        )
        for r in rows
    ]


def bulk_request(
    patient_ids: Sequence[str] | None,
    flt: OnboardingFilter | None,
    dry_run: bool | None,
    idempotency_key: str | None,
) -> BulkRequest:
    return BulkRequest(
        patient_ids=[str(i) for i in patient_ids] if patient_ids is not None else None,
        filter=flt.to_data() if flt is not None else None,
        dry_run=bool(dry_run),
        idempotency_key=idempotency_key,
    )
