"""The identity claim both login-screen mutations take (SPEC 2.1)."""

from __future__ import annotations

from datetime import date

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from onboarding.errors import ErrorCode, Problem
from onboarding.self_service import IdentityClaim

MAX_FIELD = 254


@strawberry.input(description="What the patient types on the login screen.")
class IdentityInput:
    email: str
    last_name: str
    date_of_birth: date
    zip_code: str

    def claim(self) -> IdentityClaim | None:
        """None for input no chart could match (oversized); the answer stays the same."""
        if max(len(self.email), len(self.last_name), len(self.zip_code)) > MAX_FIELD:
            return None
        return IdentityClaim(self.email, self.last_name, self.date_of_birth, self.zip_code)


async def within_budget(info: Info, claim: IdentityClaim | None) -> bool:
    """Per client address and per typed address (SECURITY ENUM-3). Both keys are
    independent of whether a chart exists, so RATE_LIMITED tells nothing about one."""
    ctx = info.context
    keys = [f"ip:{ctx.client_addr}"]
    if claim is not None:
        keys.append(f"email:{claim.email.strip().casefold()}")
    return await ctx.services.limiter.allow("self_service", *keys)


@strawberry.type(description="Always the same, whatever matched (no account enumeration).")
class SelfServicePayload:
    ok: bool
    message: str
    user_errors: list[UserError]


SELF_SERVICE_MESSAGE = (
    "If the details match a patient of the clinic with portal access, an email is on its way "
    "to the address on file. If nothing arrives, call the clinic."
)


def answer(allowed: bool) -> SelfServicePayload:
    if not allowed:
        return SelfServicePayload(
            ok=False,
            message="Too many requests; try again in a few minutes.",
            user_errors=user_errors([Problem(ErrorCode.RATE_LIMITED, "too many requests")]),
        )
    return SelfServicePayload(ok=True, message=SELF_SERVICE_MESSAGE, user_errors=[])
