"""Query root: staff reads and the patient app's tokenInfo."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import strawberry

from graph.context import Info
from graph.errors import BadRequest, ErrorCode, RateLimited
from graph.types.audit import (
    AuditEvent,
    AuditEventConnection,
    AuditEventEdge,
    decode_audit_cursor,
    encode_audit_cursor,
)
from graph.types.common import PageInfo, page_size
from graph.types.onboarding import (
    OnboardingFilter,
    PatientConnection,
    StatusCount,
    connection_from_page,
)
from graph.types.patient import Patient, PortalAccount
from graph.types.practice import Practice
from models import AuditEvent as AuditEventModel
from models import Patient as PatientModel
from models import Practice as PracticeModel
from onboarding.credentials import check_username
from onboarding.listing import AccountRow, BadCursor, PatientReader
from onboarding.redemption import token_info
from onboarding.stats import funnel
from onboarding.validation import parse_id


def reader(info: Info) -> PatientReader:
    ctx = info.context
    return PatientReader(ctx.practice_id, timedelta(days=ctx.settings.temporary_password_ttl_days))


@strawberry.type
class UsernameCheck:
    valid: bool
    available: bool
    reason: str | None


@strawberry.type(description="What the patient app may know about a link before redeeming it.")
class TokenInfo:
    valid: bool
    error: ErrorCode | None
    username_required: bool
    username: str | None
    expires_at: datetime | None
    date_of_birth_required: bool


@strawberry.type(description="The onboarding funnel for a date range (SPEC 7.5).")
class OnboardingStats:
    status_counts: list[StatusCount]
    invitations_sent: int = strawberry.field(description="Staff invitations sent in the range.")
    patients_invited: int = strawberry.field(
        description="Patients whose first invitation was sent in the range."
    )
    patients_activated: int = strawberry.field(
        description="Of those, how many chose their own password through a link."
    )
    activation_rate: float | None
    median_hours_to_activation: float | None


@strawberry.type
class Query:
    @strawberry.field(description="One patient of the caller's practice (staff).")
    async def patient(self, info: Info, id: strawberry.ID) -> Patient | None:
        info.context.require_staff()
        pid = parse_id(id)
        if pid is None:
            return None
        row = await reader(info).one(pid)
        return Patient.from_row(row) if row else None

    @strawberry.field(description="The caller's practice profile (staff).")
    async def practice(self, info: Info) -> Practice:
        staff = info.context.require_staff()
        return Practice.from_model(await PracticeModel.get(id=staff.practice_id))

    @strawberry.field(description="The Onboarding Tool's list (staff).")
    async def onboarding(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: OnboardingFilter | None = None,
    ) -> PatientConnection:
        info.context.require_staff()
        size = page_size(first, default=50, maximum=info.context.settings.max_page_size)
        if filter and filter.search and len(filter.search) > 200:
            raise BadRequest("search must be at most 200 characters")
        data = filter.to_data() if filter else None
        patient_reader = reader(info)
        try:
            page = await patient_reader.page(size, after, data)
        except BadCursor as exc:
            raise BadRequest(str(exc)) from exc
        return connection_from_page(patient_reader, data, page.rows, page.has_next_page)

    @strawberry.field(
        description="The logged-in patient's own account (patient session bearer). A session"
        " opened with a staff-set password gets PASSWORD_CHANGE_REQUIRED until it is changed."
    )
    async def me(self, info: Info) -> PortalAccount:
        account = info.context.require_patient().account
        return PortalAccount.from_row(
            AccountRow(
                username=account.username,
                must_change_password=account.must_change_password,
                last_login_at=account.last_login_at,
                locked=False,
            )
        )

    @strawberry.field(description="Is this username valid and free? (staff; rate-limited)")
    async def username_available(
        self, info: Info, username: str, patient_id: strawberry.ID | None = None
    ) -> UsernameCheck:
        ctx = info.context
        staff = ctx.require_staff()
        if not await ctx.services.limiter.allow("username_check", f"staff:{staff.id}"):
            raise RateLimited("too many username checks; slow down")
        pid = parse_id(patient_id) if patient_id is not None else None
        if pid is not None:
            patient = await PatientModel.filter(id=pid, practice_id=ctx.practice_id).first()
            pid = patient.id if patient else None
        result = await check_username(username.strip(), patient_id=pid)
        return UsernameCheck(valid=result.valid, available=result.available, reason=result.reason)

    @strawberry.field(description="Audit events of the practice, newest first (staff).")
    async def audit_events(
        self,
        info: Info,
        patient_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> AuditEventConnection:
        ctx = info.context
        ctx.require_staff()
        size = page_size(first, default=50, maximum=ctx.settings.max_page_size)
        query = AuditEventModel.filter(practice_id=ctx.practice_id)
        if patient_id is not None:
            pid = parse_id(patient_id)
            if pid is None:
                return AuditEventConnection(
                    edges=[], page_info=PageInfo(end_cursor=None, has_next_page=False)
                )
            query = query.filter(patient_id=pid)
        if after:
            query = query.filter(id__lt=decode_audit_cursor(after))
        events = await query.order_by("-id").limit(size + 1)
        edges = [
            AuditEventEdge(cursor=encode_audit_cursor(e.id), node=AuditEvent.from_model(e))
            for e in events[:size]
        ]
        return AuditEventConnection(
            edges=edges,
            page_info=PageInfo(
                end_cursor=edges[-1].cursor if edges else None, has_next_page=len(events) > size
            ),
        )

    @strawberry.field(description="The onboarding funnel of the practice (staff).")
    async def onboarding_stats(self, info: Info, start: date, end: date) -> OnboardingStats:
        info.context.require_staff()
        if end < start or (end - start).days > 3660:
            raise BadRequest("end must be on or after start, within ten years")
        result = await funnel(reader(info), start, end)
        return OnboardingStats(
            status_counts=[StatusCount(status=s, count=n) for s, n in result.status_counts.items()],
            invitations_sent=result.invitations_sent,
            patients_invited=result.patients_invited,
            patients_activated=result.patients_activated,
            activation_rate=result.activation_rate,
            median_hours_to_activation=result.median_hours_to_activation,
        )

    @strawberry.field(description="Is this emailed link usable? (patient app, anonymous)")
    async def token_info(self, info: Info, token: str) -> TokenInfo:
        ctx = info.context
        if not await ctx.services.limiter.allow("token", f"ip:{ctx.client_addr}"):
            return TokenInfo(
                valid=False,
                error=ErrorCode.RATE_LIMITED,
                username_required=False,
                username=None,
                expires_at=None,
                date_of_birth_required=False,
            )
        result = await token_info(token, ctx.settings)
        return TokenInfo(
            valid=result.valid,
            error=result.error,
            username_required=result.username_required,
            username=result.username,
            expires_at=result.expires_at,
            date_of_birth_required=result.date_of_birth_required,
        )
