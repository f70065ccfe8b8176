from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import UserError, user_errors
from graph.mutations._shared import given
from graph.permissions import staff_only
from graph.types.practice import Practice
from onboarding.practice import ProfileInput
from onboarding.practice import update_practice as update_profile


@strawberry.input(description='Only the fields given change; null or "" clears an optional one.')
class UpdatePracticeInput:
    display_name: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    reply_to: str | None = strawberry.UNSET
    sender_name: str | None = strawberry.UNSET
    website: str | None = strawberry.UNSET
    time_zone: str | None = strawberry.UNSET


@strawberry.type
class UpdatePracticePayload:
    practice: Practice | None
    user_errors: list[UserError]


@strawberry.mutation(
    description="Edit the practice profile (practice administrators; others get FORBIDDEN).",
    extensions=staff_only(),
)
async def update_practice(info: Info, input: UpdatePracticeInput) -> UpdatePracticePayload:
    ctx = info.context
    staff = ctx.require_staff()
    practice, problems = await update_profile(
        ctx.actor,
        staff,
        ProfileInput(
            name=given(input.display_name),
            phone=given(input.phone),
            reply_to=given(input.reply_to),
            sender_name=given(input.sender_name),
            website=given(input.website),
            time_zone=given(input.time_zone),
        ),
        region=ctx.settings.phone_region,
    )
    return UpdatePracticePayload(
        practice=Practice.from_model(practice) if practice else None,
        user_errors=user_errors(problems),
    )
