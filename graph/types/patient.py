from __future__ import annotations

from datetime import date, datetime

import strawberry

from graph.types.enums import Channel, ChartStatus, DeliveryStatus, PortalStatus
from onboarding.listing import AccountRow, InvitationRow, PatientRow


@strawberry.type(description="The patient's portal login, as staff may see it (never a password).")
class PortalAccount:
    username: str
    must_change_password: bool
    last_login_at: datetime | None
    locked: bool

    @classmethod
    def from_row(cls, row: AccountRow) -> PortalAccount:
        return cls(
            username=row.username,
            must_change_password=row.must_change_password,
            last_login_at=row.last_login_at,
            locked=row.locked,
        )


@strawberry.type(
    description="The newest invitation/reset link sent to the patient (never the link)."
)
class Invitation:
    sent_to: str
    sent_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    delivery_status: DeliveryStatus
    self_service: bool
    channel: Channel
    delivery_detail: str | None = strawberry.field(
        description="The mail server's or SMS provider's reply to the last attempt, e.g."
        " \"21211 The 'To' number … is not a valid phone number.\" for a FAILED text."
    )

    @classmethod
    def from_row(cls, row: InvitationRow) -> Invitation:
        return cls(
            sent_to=row.sent_to,
            sent_at=row.sent_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
            delivery_status=DeliveryStatus(row.delivery_status),
            self_service=row.purpose == "self_service",
            channel=Channel(row.channel),
            delivery_detail=row.delivery_detail,
        )


@strawberry.type(description="A chart of the practice with its portal state.")
class Patient:
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

    @classmethod
    def from_row(cls, row: PatientRow) -> Patient:
        return cls(
            id=strawberry.ID(str(row.id)),
            chart_number=row.chart_number,
            first_name=row.first_name,
            last_name=row.last_name,
            date_of_birth=row.date_of_birth,
            email=row.email,
            zip_code=row.zip_code,
            preferred_language=row.preferred_language,
            mobile_phone=row.mobile_phone,
            sms_consent=row.sms_consent,
            chart_status=ChartStatus(row.chart_status),
            portal_enabled=row.portal_enabled,
            portal_status=row.portal_status,
            email_shared_with=row.email_shared_with,
            account=PortalAccount.from_row(row.account) if row.account else None,
            last_invitation=Invitation.from_row(row.last_invitation)
            if row.last_invitation
            else None,
        )
