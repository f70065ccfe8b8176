from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.ids import PATIENT_ID_DESCRIPTION, patient_pk
from graph.permissions import staff_only
from graph.types.patient import PortalAccount
from onboarding.credentials import set_credentials as set_account_credentials
from onboarding.errors import ErrorCode, Problem
from onboarding.listing import AccountRow


@strawberry.input
class SetCredentialsInput:
    patient_id: strawberry.ID = strawberry.field(description=PATIENT_ID_DESCRIPTION)
    username: str
    password: str | None = strawberry.field(
        default=None,
        description="Optional; a staff-set password must be changed at the next login.",
    )


@strawberry.type
class SetCredentialsPayload:
    account: PortalAccount | None
    user_errors: list[UserError]


@strawberry.mutation(
    description="Set a username and optionally a password by hand (staff).",
    extensions=staff_only(),
)
async def set_credentials(info: Info, input: SetCredentialsInput) -> SetCredentialsPayload:
    ctx = info.context
    staff = ctx.require_staff()
    # Per staff user: each call can test whether a username is taken deployment-wide.
    if not await ctx.services.limiter.allow("set_credentials", f"staff:{staff.id}"):
        return SetCredentialsPayload(
            account=None,
            user_errors=user_errors(
                [Problem(ErrorCode.RATE_LIMITED, "too many attempts; try again later")]
            ),
        )
    pid = patient_pk(input.patient_id)
    if pid is None:
        return SetCredentialsPayload(
            account=None,
            user_errors=user_errors(
                [Problem(ErrorCode.NOT_FOUND, "no such patient", ("patientId",))]
            ),
        )
    result = await set_account_credentials(
        ctx.actor,
        pid,
        input.username,
        input.password,
        hasher=ctx.services.hasher,
        min_length=ctx.settings.password_min_length,
    )
    if result.problems or result.account is None:
        return SetCredentialsPayload(account=None, user_errors=user_errors(result.problems))
    account = result.account
    return SetCredentialsPayload(
        account=PortalAccount.from_row(
            AccountRow(
                username=account.username,
                must_change_password=account.must_change_password,
                last_login_at=account.last_login_at,
                locked=False,
            )
        ),
        user_errors=[],
    )
