"""Enable and disable portal access, in bulk (SPEC 2.2, 2.3)."""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.settings import Settings
from models import INVITABLE_CHART_STATUSES, Patient, RevokeReason
from models.patient import lock_patients
from onboarding import audit
from onboarding.actor import Actor
from onboarding.bulk import (
    BulkOutcome,
    BulkRequest,
    RowResult,
    idempotency_for,
    resolve_patients,
    start,
)
from onboarding.errors import ErrorCode, Problem
from onboarding.links import revoke_links
from onboarding.sessions import revoke_sessions


async def enable_portal(actor: Actor, request: BulkRequest, settings: Settings) -> BulkOutcome:
    assert actor.practice_id is not None
    idempotency = idempotency_for(actor.practice_id, "enablePortal", request)
    raw_ids, answer = await start(
        actor.practice_id, request, settings, idempotency=idempotency, from_json=RowResult.from_json
    )
    if answer:
        return answer
    results, patients = await resolve_patients(actor.practice_id, raw_ids)
    to_enable: list[int] = []
    for index, result in enumerate(results):
        if result.patient_id is None:
            continue
        patient = patients[result.patient_id]
        if patient.chart_status not in INVITABLE_CHART_STATUSES:
            result.problems.append(
                Problem(
                    ErrorCode.INACTIVE_PATIENT,
                    "the chart is inactive or deceased",
                    ("patientIds", str(index)),
                )
            )
        elif not patient.portal_enabled and patient.id not in to_enable:
            to_enable.append(patient.id)
    if request.dry_run:
        return BulkOutcome(results=results)
    try:
        async with in_transaction():
            if idempotency:
                await idempotency.record([r.to_json() for r in results])
            if to_enable:
                await lock_patients(to_enable)
                await Patient.filter(id__in=to_enable, portal_enabled=False).update(
                    portal_enabled=True
                )
                await audit.record_many(actor, "portal.enabled", to_enable)
    except IntegrityError:
        # A twin request with the same key committed first: answer as it did.
        assert idempotency is not None
        stored, _ = await idempotency.stored()
        return BulkOutcome(results=[RowResult.from_json(r) for r in stored or []])
    return BulkOutcome(results=results)


async def disable_portal(actor: Actor, raw_ids: Sequence[str]) -> list[RowResult]:
    assert actor.practice_id is not None
    results, patients = await resolve_patients(actor.practice_id, raw_ids)
    to_disable = list(
        dict.fromkeys(
            r.patient_id
            for r in results
            if r.patient_id is not None and patients[r.patient_id].portal_enabled
        )
    )
    if to_disable:
        async with in_transaction():
            await lock_patients(to_disable)
            await Patient.filter(id__in=to_disable).update(portal_enabled=False)
            # Outstanding links and sessions die with access (SECURITY TOK-5).
            await revoke_links(to_disable, RevokeReason.PORTAL_DISABLED)
            await revoke_sessions(to_disable)
            await audit.record_many(actor, "portal.disabled", to_disable)
    return results
