"""Query root: staff reads and the patient app's tokenInfo."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import strawberry

from graph.context import Info
from graph.errors import BadRequest, ErrorCode, RateLimited
from graph.ids import PATIENT_ID_DESCRIPTION, patient_pk
from graph.nodes import resolve_nodes
from graph.permissions import staff_only
from graph.types.audit import AuditEvent, AuditEventConnection, AuditEventEdge
from graph.types.common import PageInfo, page_args
from graph.types.node import Node
from graph.types.onboarding import (
    OnboardingFilter,
    PatientConnection,
    StatusCount,
    connection_from_page,
    page_wants,
)
from graph.types.patient import Patient, PortalAccount
from graph.types.practice import Practice
from graph.webhook_queries import webhook_deliveries, webhook_endpoints
from models import AuditEvent as AuditEventModel
from models import Patient as PatientModel
from models import Practice as PracticeModel
from onboarding.credentials import check_username
from onboarding.listing import AccountRow, PatientReader
from onboarding.redemption import token_info
from onboarding.stats import funnel

STATS_FIRST_DAY = date(1900, 1, 1)
STATS_LAST_DAY = date(9998, 12, 31)


def reader(info: Info) -> PatientReader:
    return info.context.patient_reader()


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
    @strawberry.field(
        description="One patient of the caller's practice (staff).", extensions=staff_only()
    )
    async def patient(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description=PATIENT_ID_DESCRIPTION)],
    ) -> Patient | None:
        pid = patient_pk(id)
        if pid is None:
            return None
        row = await reader(info).one(pid)
        return Patient.from_row(row) if row else None

    @strawberry.field(description="The caller's practice profile (staff).", extensions=staff_only())
    async def practice(self, info: Info) -> Practice:
        staff = info.context.require_staff()
        return Practice.from_model(await PracticeModel.get(id=staff.practice_id))

    @strawberry.field(description="The Onboarding Tool's list (staff).", extensions=staff_only())
    async def onboarding(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: OnboardingFilter | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> PatientConnection:
        ctx = info.context
        request = page_args(
            first, after, last, before, default=50, maximum=ctx.settings.max_page_size
        )
        if filter and filter.search and len(filter.search) > 200:
            raise BadRequest("search must be at most 200 characters")
        data = filter.to_data() if filter else None
        cursors = ctx.cursors
        boundary = cursors.open_patient(request.cursor) if request.cursor else None
        patient_reader = reader(info)
        page = await patient_reader.page(
            request.size,
            boundary,
            data,
            backward=request.backward,
            wants=page_wants(info._raw_info),
        )
        return connection_from_page(patient_reader, cursors, data, request, boundary, page)

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

    @strawberry.field(
        description="Is this username valid and free? (staff; rate-limited)",
        extensions=staff_only(),
    )
    async def username_available(
        self,
        info: Info,
        username: str,
        patient_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=PATIENT_ID_DESCRIPTION)
        ] = None,
    ) -> UsernameCheck:
        ctx = info.context
        staff = ctx.staff
        assert staff is not None
        if not await ctx.services.limiter.allow("username_check", f"staff:{staff.id}"):
            raise RateLimited("too many username checks; slow down")
        pid = patient_pk(patient_id) if patient_id is not None else None
        if pid is not None:
            patient = await PatientModel.filter(id=pid, practice_id=ctx.practice_id).first()
            pid = patient.id if patient else None
        result = await check_username(username.strip(), patient_id=pid)
        return UsernameCheck(valid=result.valid, available=result.available, reason=result.reason)

    @strawberry.field(
        description="Audit events of the practice, newest first (staff).", extensions=staff_only()
    )
    async def audit_events(
        self,
        info: Info,
        patient_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=PATIENT_ID_DESCRIPTION)
        ] = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> AuditEventConnection:
        ctx = info.context
        request = page_args(
            first, after, last, before, default=50, maximum=ctx.settings.max_page_size
        )
        query = AuditEventModel.filter(practice_id=ctx.practice_id)
        pid = None
        if patient_id is not None:
            pid = patient_pk(patient_id)
            if pid is None:
                return AuditEventConnection(
                    edges=[],
                    page_info=PageInfo(
                        start_cursor=None, end_cursor=None, _has_next=False, _has_previous=False
                    ),
                )
            query = query.filter(patient_id=pid)
        cursors = ctx.cursors
        boundary = cursors.open_audit(request.cursor, pid) if request.cursor else None
        page_query = query
        if boundary is not None:
            page_query = (
                query.filter(id__gt=boundary) if request.backward else query.filter(id__lt=boundary)
            )
        order = "id" if request.backward else "-id"
        events = list(await page_query.order_by(order).limit(request.size + 1))
        more = len(events) > request.size
        events = events[: request.size]
        if request.backward:
            events.reverse()
        edges = [
            AuditEventEdge(cursor=cursors.audit(e.id, pid), node=AuditEvent.from_model(e))
            for e in events
        ]

        async def other_side() -> bool:
            if boundary is None:
                return False
            if request.backward:
                return await query.filter(id__lte=boundary).exists()
            return await query.filter(id__gte=boundary).exists()

        return AuditEventConnection(
            edges=edges,
            page_info=PageInfo(
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
                _has_next=other_side if request.backward else more,
                _has_previous=more if request.backward else other_side,
            ),
        )

    @strawberry.field(
        description="Any object by its global id (Relay; staff). Null when it does not exist"
        " or belongs to another practice.",
        extensions=staff_only(),
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return (await resolve_nodes(info, [id]))[0]

    @strawberry.field(
        description="Objects by global id, in the order asked, null where unknown.",
        extensions=staff_only(),
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > info.context.settings.max_page_size:
            raise BadRequest(f"at most {info.context.settings.max_page_size} ids")
        return await resolve_nodes(info, ids)

    @strawberry.field(
        description="The onboarding funnel of the practice (staff).", extensions=staff_only()
    )
    async def onboarding_stats(self, info: Info, start: date, end: date) -> OnboardingStats:
        info.context.require_staff()
        if not all(STATS_FIRST_DAY <= day <= STATS_LAST_DAY for day in (start, end)):
            # The range is turned into instants a day wide: 9999-12-31 overflowed.
            raise BadRequest(
                f"start and end must be between {STATS_FIRST_DAY} and {STATS_LAST_DAY}"
            )
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

    webhook_endpoints = strawberry.field(
        resolver=webhook_endpoints,
        description="The practice's webhook endpoints (staff).",
        extensions=staff_only(),
    )
    webhook_deliveries = strawberry.field(
        resolver=webhook_deliveries,
        description="An endpoint's deliveries, newest first, with every attempt (staff).",
        extensions=staff_only(),
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
