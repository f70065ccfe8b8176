"""Staff send the invitation/reset email (SPEC 2.2, 2.3, 2.5): one result per patient,
links and outbox rows written in bulk inside one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.functions import Count

from core.clock import utcnow
from core.link_keys import LinkKeys
from core.settings import Settings
from mail import compose, outbox
from models import INVITABLE_CHART_STATUSES, LinkPurpose, Patient, Practice
from onboarding import checkpoints, reach
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
from onboarding.unit_of_work import IssuedLink, patient_change


@dataclass
class PlannedInvitation:
    sent_to: str
    expires_at: datetime
    reset: bool
    channel: str = reach.EMAIL


@dataclass
class InvitationResult(RowResult):
    invitation: PlannedInvitation | None = None

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if self.invitation:
            data["invitation"] = {
                "sent_to": self.invitation.sent_to,
                "expires_at": self.invitation.expires_at.isoformat(),
                "reset": self.invitation.reset,
                "channel": self.invitation.channel,
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InvitationResult:
        planned = data.get("invitation")
        return cls(
            data["requested_id"],
            data["patient_id"],
            cls.problems_from_json(data),
            PlannedInvitation(
                planned["sent_to"],
                datetime.fromisoformat(planned["expires_at"]),
                planned["reset"],
                planned.get("channel", reach.EMAIL),
            )
            if planned
            else None,
        )


async def shared_address_counts(practice_id: int, email_keys: Sequence[str]) -> dict[str, int]:
    """How many charts of the practice carry each address (a family address > 1).
    Addresses on one chart only are left out: callers read them as 1."""
    keys = list(set(email_keys))
    query = Patient.filter(practice_id=practice_id, email_key__not_isnull=True)
    if len(keys) <= 100:
        query = query.filter(email_key__in=keys)
    # For a large batch, the practice's shared addresses (few) in one grouped scan of
    # the (practice_id, email_key) index beat thousands of IN parameters.
    rows = (
        await query.annotate(n=Count("id"))
        .group_by("email_key")
        .filter(n__gt=1)
        .values_list("email_key", "n")
    )
    wanted = set(keys)
    return {key: int(n) for key, n in rows if key in wanted}


def _row_problem(
    patient: Patient,
    shared: int,
    confirm_shared: bool,
    index: int,
    channel: str | None,
    texts_off: bool,
) -> Problem | None:
    where = ("patientIds", str(index))
    if patient.chart_status not in INVITABLE_CHART_STATUSES:
        return Problem(ErrorCode.INACTIVE_PATIENT, "the chart is inactive or deceased", where)
    if not patient.portal_enabled:
        return Problem(ErrorCode.PORTAL_DISABLED, "enable portal access first", where)
    if problem := reach.link_route_problem(patient, channel, where):
        return problem
    if reach.link_route(patient, channel) == reach.SMS:
        if texts_off:
            return Problem(
                ErrorCode.SMS_NOT_AVAILABLE,
                "this clinic does not send text messages (PORTAL_SMS_BACKEND=off)",
                where,
            )
        return None  # a mobile number is not an address several charts share
    if shared > 1 and not confirm_shared:
        return Problem(
            ErrorCode.EMAIL_SHARED,
            f"the address on file is shared with {shared - 1} other patient(s); whoever reads "
            "it can open this patient's records. Confirm to send anyway.",
            where,
        )
    return None


def _plan(
    raw_ids: Sequence[str],
    patients: dict[int, Patient],
    shared: dict[str, int],
    with_password: set[int],
    confirm_shared_email: bool,
    expires_at: datetime,
    channel: str | None = None,
    texts_off: bool = False,
) -> tuple[list[InvitationResult], dict[int, InvitationResult]]:
    """Each requested row's result, and the one row per patient that will be sent."""
    results = [
        InvitationResult(r.requested_id, r.patient_id, r.problems)
        for r in match_rows(raw_ids, patients)
    ]
    chosen: dict[int, InvitationResult] = {}
    for index, result in enumerate(results):
        if result.patient_id is None:
            continue
        patient = patients[result.patient_id]
        problem = _row_problem(
            patient,
            shared.get(patient.email_key or "", 1),
            confirm_shared_email,
            index,
            channel,
            texts_off,
        )
        if problem:
            result.problems.append(problem)
            continue
        route = reach.link_route(patient, channel)
        result.invitation = PlannedInvitation(
            (patient.email if route == reach.EMAIL else patient.mobile_phone) or "",
            expires_at,
            patient.id in with_password,
            route or reach.EMAIL,
        )
        chosen.setdefault(patient.id, result)  # a repeated id sends one message
    return results, chosen


def _with_password(patients: dict[int, Patient]) -> set[int]:
    # The bulk read (PatientRow) carries it, joined in the statement that locks.
    return {pid for pid, p in patients.items() if getattr(p, "has_password", False)}


async def send_invitations(
    actor: Actor,
    request: BulkRequest,
    *,
    confirm_shared_email: bool,
    settings: Settings,
    channel: str | None = None,
) -> BulkOutcome:
    """``channel`` None: email where there is an address, else a text with consent."""
    assert actor.practice_id is not None
    practice_id = actor.practice_id
    extra: dict[str, Any] = {"confirm": confirm_shared_email}
    if channel is not None:
        extra["channel"] = channel
    idempotency = idempotency_for(practice_id, "sendInvitation", request, **extra)
    raw_ids, answer = await start(
        practice_id,
        request,
        settings,
        idempotency=idempotency,
        from_json=InvitationResult.from_json,
    )
    if answer:
        return answer
    ttl: timedelta = settings.staff_link_ttl

    async def plan(
        patients: dict[int, Patient], ids: Sequence[str]
    ) -> tuple[list[InvitationResult], dict[int, Any]]:
        shared = await shared_address_counts(
            practice_id, [p.email_key for p in patients.values() if p.email_key]
        )
        return _plan(
            ids,
            patients,
            shared,
            _with_password(patients),
            confirm_shared_email,
            utcnow() + ttl,
            channel,
            settings.sms_backend == "off",
        )

    if request.dry_run:
        _, patients = await resolve_patients(practice_id, raw_ids)
        results, _ = await plan(patients, raw_ids)
        return BulkOutcome(results=results)
    keys = LinkKeys.from_settings(settings)
    wanted = parse_ids(raw_ids)
    # Nonces and digests (an HMAC and a SHA-256 each) made before the lock, so 10,000 of
    # them are not computed while the patients' rows are held; those of rows that turn
    # out not to be sent are simply dropped.
    issued = {pid: keys.issue() for pid in wanted}
    await checkpoints.reached("invite.before_lock")
    try:
        async with patient_change(actor, wanted, practice_id=practice_id, bulk=True) as change:
            # Planned on the charts as they are under the lock: an address changed a
            # moment ago is the one the link goes to (never the previous one).
            # ... and on the filter as it selects now (a row it no longer selects is
            # left out, not invited).
            ids = await still_selected(practice_id, request, raw_ids, settings)
            results, chosen = await plan(change.patients, ids)
            links = await change.issue_links(
                [(pid, planned_address(chosen[pid])) for pid in chosen],
                purpose=LinkPurpose.INVITATION,
                ttl=ttl,
                created_by=actor.actor_id,
                keys=keys,
                issued=issued,
            )
            practice = await change.practice()
            profile = compose.clinic(practice)
            for link in links:
                planned = chosen[link.patient_id].invitation
                assert planned is not None
                planned.expires_at = link.expires_at
            await change.queue(
                [
                    invitation_message(
                        practice,
                        change.patients[link.patient_id],
                        link,
                        settings,
                        reset=bool(chosen[link.patient_id].invitation.reset),
                        self_service=False,
                        profile=profile,
                    )
                    for link in links
                ]
            )
            await change.record_many(actor, "invitation.sent", list(chosen))
            if idempotency:
                await idempotency.record([r.to_json() for r in results])
    except IntegrityError as error:
        return await twin_outcome(idempotency, error, InvitationResult.from_json)
    return BulkOutcome(results=results)


def invitation_message(
    practice: Practice,
    patient: Patient,
    link: IssuedLink,
    settings: Settings,
    *,
    reset: bool,
    self_service: bool,
    reminder: bool = False,
    profile: dict[str, Any] | None = None,
) -> outbox.Queued:
    draft = compose.invitation(
        practice,
        patient,
        link=compose.LinkRef(settings.link_base_url, link.nonce, link.digest),
        expires_at=link.expires_at,
        reset=reset,
        self_service=self_service,
        reminder=reminder,
        profile=profile,
    )
    return outbox.message(
        practice_id=practice.id,
        patient_id=patient.id,
        to_addr=link.sent_to,
        draft=draft,
        link_id=link.link_id,
        channel=link.channel,
    )


def planned_address(result: InvitationResult) -> str:
    assert result.invitation is not None
    return result.invitation.sent_to
