"""Enable and disable portal access, in bulk (SPEC 2.2, 2.3)."""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.exceptions import IntegrityError

from core.settings import Settings
from models import INVITABLE_CHART_STATUSES, Patient, RevokeReason
from onboarding import checkpoints
from onboarding.actor import Actor
from onboarding.bulk import (
    BulkOutcome,
    BulkRequest,
    RowResult,
    idempotency_for,
    match_rows,
    parse_ids,
    resolve_patients,
    start,
    still_selected,
    twin_outcome,
)
from onboarding.errors import ErrorCode, Problem
from onboarding.unit_of_work import patient_change


def _enable_results(raw_ids: Sequence[str], patients: dict[int, Patient]) -> list[RowResult]:
    results = match_rows(raw_ids, patients)
    for index, result in enumerate(results):
        if result.patient_id is None:
            continue
        if patients[result.patient_id].chart_status not in INVITABLE_CHART_STATUSES:
            result.problems.append(
                Problem(
                    ErrorCode.INACTIVE_PATIENT,
                    "the chart is inactive or deceased",
                    ("patientIds", str(index)),
                )
            )
    return results


async def enable_portal(actor: Actor, request: BulkRequest, settings: Settings) -> BulkOutcome:
    assert actor.practice_id is not None
    idempotency = idempotency_for(actor.practice_id, "enablePortal", request)
    raw_ids, answer = await start(
        actor.practice_id, request, settings, idempotency=idempotency, from_json=RowResult.from_json
    )
    if answer:
        return answer
    if request.dry_run:
        _, patients = await resolve_patients(actor.practice_id, raw_ids)
        return BulkOutcome(results=_enable_results(raw_ids, patients))
    await checkpoints.reached("enable.before_lock")
    try:
        async with patient_change(
            actor, parse_ids(raw_ids), practice_id=actor.practice_id, bulk=True
        ) as change:
            # Judged under the lock: a chart made inactive a moment ago stays disabled.
            ids = await still_selected(actor.practice_id, request, raw_ids, settings)
            results = _enable_results(ids, change.patients)
            if idempotency:
                await idempotency.record([r.to_json() for r in results])
            enabled = await change.enable_portal([r.patient_id for r in results if r.ok])  # type: ignore[misc]
            await change.record_many(actor, "portal.enabled", enabled)
    except IntegrityError as error:
        return await twin_outcome(idempotency, error, RowResult.from_json)
    return BulkOutcome(results=results)


async def disable_portal(actor: Actor, raw_ids: Sequence[str]) -> list[RowResult]:
    assert actor.practice_id is not None
    async with patient_change(
        actor, parse_ids(raw_ids), practice_id=actor.practice_id, bulk=True
    ) as change:
        results = match_rows(raw_ids, change.patients)
        to_disable = list(
            dict.fromkeys(
                r.patient_id
                for r in results
                if r.patient_id is not None and change.patients[r.patient_id].portal_enabled
            )
        )
        await change.disable_portal(to_disable, RevokeReason.PORTAL_DISABLED)
        await change.record_many(actor, "portal.disabled", to_disable)
    return results
