from __future__ import annotations

from datetime import date

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from onboarding.errors import ErrorCode, Problem
from onboarding.redemption import redeem_token as redeem


@strawberry.input
class RedeemTokenInput:
    token: str
    username: str | None = strawberry.field(
        default=None, description="Required when the patient has no username yet."
    )
    password: str
    date_of_birth: date | None = strawberry.field(
        default=None, description="Required when tokenInfo says dateOfBirthRequired."
    )


@strawberry.type
class RedeemedAccount:
    username: str


@strawberry.type
class RedeemTokenPayload:
    account: RedeemedAccount | None
    user_errors: list[UserError]


@strawberry.mutation(
    description="Open the emailed link: choose a username and password (anonymous)."
)
async def redeem_token(info: Info, input: RedeemTokenInput) -> RedeemTokenPayload:
    ctx = info.context
    if not await ctx.services.limiter.allow("token", f"ip:{ctx.client_addr}"):
        return RedeemTokenPayload(
            account=None,
            user_errors=user_errors(
                [Problem(ErrorCode.RATE_LIMITED, "too many attempts; try again later")]
            ),
        )
    account, problems = await redeem(
        ctx.actor,
        input.token,
        input.username,
        input.password,
        input.date_of_birth,
        hasher=ctx.services.hasher,
        settings=ctx.settings,
    )
    if problems or account is None:
        return RedeemTokenPayload(account=None, user_errors=user_errors(problems))
    return RedeemTokenPayload(account=RedeemedAccount(username=account.username), user_errors=[])
