from __future__ import annotations

from datetime import date, datetime

import strawberry

from core.enums import member_of
from core.objects import filled
from graph.context import Info
from graph.ids import INVITATION, PATIENT, global_id
from graph.types.common import PageInfo, page_args
from graph.types.enums import Channel, ChartStatus, DeliveryStatus, PortalStatus
from graph.types.node import Node
from onboarding.listing import AccountRow, InvitationRow, PatientRow

_chart_status = member_of(ChartStatus)
_channel = member_of(Channel)
_delivery_status = member_of(DeliveryStatus)


@strawberry.type(description="The patient's portal login, as staff may see it (never a password).")
class PortalAccount:
    username: str
    must_change_password: bool
    last_login_at: datetime | None
    locked: bool

    @classmethod
    def from_row(cls, row: AccountRow) -> PortalAccount:
        return filled(
            cls,
            {
                "username": row.username,
                "must_change_password": row.must_change_password,
                "last_login_at": row.last_login_at,
                "locked": row.locked,
            },
        )


@strawberry.type(description="An invitation/reset link sent to the patient (never the link).")
class Invitation(Node):
    id: strawberry.ID
    # SPEC 9.3: issue 11 announced the field (email only); texts now travel too.
    channel: Channel = strawberry.field(
        description="How the link reached (or was meant to reach) the patient."
    )
    sent_to: str
    sent_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    revoke_reason: str | None = strawberry.field(
        description="Why the link stopped working early: superseded, email_changed,"
        " portal_disabled, redeemed_other, undeliverable, password_set, too_many_attempts."
    )
    delivery_status: DeliveryStatus
    delivery_detail: str | None = strawberry.field(
        description="The mail server's or SMS provider's reply to the last attempt, e.g."
        ' "550 5.1.1 no such user", or "21211 The \'To\' number … is not a valid phone'
        ' number." for a FAILED text.'
    )
    self_service: bool = strawberry.field(description="Asked for from the login screen.")
    reminder: bool = strawberry.field(description="The reminder sent before a link expired.")

    @classmethod
    def from_row(cls, row: InvitationRow) -> Invitation:
        return filled(
            cls,
            {
                "id": global_id(INVITATION, row.id),
                "channel": _channel(row.channel),
                "sent_to": row.sent_to,
                "sent_at": row.sent_at,
                "expires_at": row.expires_at,
                "used_at": row.used_at,
                "revoked_at": row.revoked_at,
                "revoke_reason": row.revoke_reason,
                "delivery_status": _delivery_status(row.delivery_status),
                "delivery_detail": row.delivery_detail,
                "self_service": row.purpose == "self_service",
                "reminder": row.is_reminder,
            },
        )


@strawberry.type
class InvitationEdge:
    cursor: str
    node: Invitation


@strawberry.type(description="A patient's invitations, newest first.")
class InvitationConnection:
    edges: list[InvitationEdge]
    page_info: PageInfo


@strawberry.type(description="A chart of the practice with its portal state.")
class Patient(Node):
    id: strawberry.ID
    chart_number: str
    first_name: str
    last_name: str
    date_of_birth: date
    email: str | None
    zip_code: str | None
    preferred_language: str = strawberry.field(
        description="BCP 47; messages are written in it when shipped (en, es), else English."
    )
    mobile_phone: str | None = strawberry.field(description="E.164.")
    sms_consent: bool = strawberry.field(description="The patient agreed to portal texts.")
    chart_status: ChartStatus
    portal_enabled: bool
    portal_status: PortalStatus
    email_shared_with: int = strawberry.field(
        description="How many other patients of the practice have the same email address."
    )
    account: PortalAccount | None
    last_invitation: Invitation | None
    _pk: strawberry.Private[int]

    @strawberry.field(
        description="Every link sent to the patient with its delivery, newest first (staff)."
    )
    async def invitations(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> InvitationConnection:
        ctx = info.context
        request = page_args(
            first, after, last, before, default=20, maximum=ctx.settings.max_page_size
        )
        cursors = ctx.cursors
        boundary = cursors.open_invitation(request.cursor, self._pk) if request.cursor else None
        reader = ctx.patient_reader()
        rows, more = await reader.invitations(
            self._pk, request.size, boundary, backward=request.backward
        )
        edges = [
            InvitationEdge(cursor=cursors.invitation(self._pk, r.id), node=Invitation.from_row(r))
            for r in rows
        ]

        async def other_side() -> bool:
            if boundary is None:
                return False
            return await reader.any_invitation_beyond(
                self._pk, boundary, newer=not request.backward
            )

        return InvitationConnection(
            edges=edges,
            page_info=PageInfo(
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
                _has_next=other_side if request.backward else more,
                _has_previous=more if request.backward else other_side,
            ),
        )

    @classmethod
    def from_row(cls, row: PatientRow) -> Patient:
        account, invitation = row.account, row.last_invitation
        return filled(
            cls,
            {
                "id": global_id(PATIENT, row.id),
                "_pk": row.id,
                "chart_number": row.chart_number,
                "first_name": row.first_name,
                "last_name": row.last_name,
                "date_of_birth": row.date_of_birth,
                "email": row.email,
                "zip_code": row.zip_code,
                "preferred_language": row.preferred_language,
                "mobile_phone": row.mobile_phone,
                "sms_consent": row.sms_consent,
                "chart_status": _chart_status(row.chart_status),
                "portal_enabled": row.portal_enabled,
                "portal_status": row.portal_status,
                "email_shared_with": row.email_shared_with,
                "account": PortalAccount.from_row(account) if account else None,
                "last_invitation": Invitation.from_row(invitation) if invitation else None,
            },
        )
