from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError
from onboarding.sessions import logout as end_session


@strawberry.input
class LogoutInput:
    everywhere: bool | None = strawberry.field(
        default=False, description="Also end the patient's other sessions."
    )


@strawberry.type
class LogoutPayload:
    ok: bool
    user_errors: list[UserError]


@strawberry.mutation(
    description="End the logged-in patient's session on the server (session bearer)."
)
async def logout(info: Info, input: LogoutInput | None = None) -> LogoutPayload:
    ctx = info.context
    session = ctx.require_patient(restricted_ok=True)
    await end_session(ctx.actor, session, everywhere=bool(input and input.everywhere))
    return LogoutPayload(ok=True, user_errors=[])
