from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from onboarding.errors import ErrorCode, Problem
from onboarding.login import change_password as change


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.type
class ChangePasswordPayload:
    ok: bool
    session_token: str | None = strawberry.field(
        description="A fresh session: every earlier session, this one included, is revoked."
    )
    user_errors: list[UserError]


@strawberry.mutation(description="Change the password of the logged-in patient (session bearer).")
async def change_password(info: Info, input: ChangePasswordInput) -> ChangePasswordPayload:
    ctx = info.context
    session = ctx.require_patient(restricted_ok=True)
    account_key = f"session-account:{session.account.id}"
    if not await ctx.services.limiter.allow("login", f"ip:{ctx.client_addr}", account_key):
        return ChangePasswordPayload(
            ok=False,
            session_token=None,
            user_errors=user_errors(
                [Problem(ErrorCode.RATE_LIMITED, "too many attempts; try again later")]
            ),
        )
    result = await change(
        ctx.actor,
        session,
        input.current_password,
        input.new_password,
        hasher=ctx.services.hasher,
        settings=ctx.settings,
    )
    if result.problems:
        return ChangePasswordPayload(
            ok=False, session_token=None, user_errors=user_errors(result.problems)
        )
    return ChangePasswordPayload(ok=True, session_token=result.session_token, user_errors=[])
