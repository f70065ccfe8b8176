from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from onboarding.errors import ErrorCode, Problem
from onboarding.login import login as authenticate


@strawberry.input
class LoginInput:
    username: str
    password: str


@strawberry.type
class LoginPayload:
    session_token: str | None = strawberry.field(
        description="Send as `Authorization: Bearer …`; shown once."
    )
    must_change_password: bool = strawberry.field(
        description="The session may only call changePassword."
    )
    user_errors: list[UserError]


@strawberry.mutation(description="Patient login (anonymous).")
async def login(info: Info, input: LoginInput) -> LoginPayload:
    ctx = info.context
    keys = [f"ip:{ctx.client_addr}", f"user:{input.username.strip().casefold()[:64]}"]
    if not await ctx.services.limiter.allow("login", *keys):
        return LoginPayload(
            session_token=None,
            must_change_password=False,
            user_errors=user_errors(
                [Problem(ErrorCode.RATE_LIMITED, "too many attempts; try again later")]
            ),
        )
    result = await authenticate(
        ctx.actor,
        input.username,
        input.password,
        hasher=ctx.services.hasher,
        settings=ctx.settings,
    )
    return LoginPayload(
        session_token=result.session_token,
        must_change_password=result.must_change_password,
        user_errors=user_errors(result.problems),
    )
