"""The practice profile (SPEC 9.1): the clinic's name, phone, reply-to address, sender
name, website and time zone, which every message uses. Practice administrators edit it;
every staff user of the practice reads it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from tortoise.transactions import in_transaction

from core.unset import UNSET
from models import Practice, StaffUser
from onboarding.actor import Actor
from onboarding.admin import MAX_PRACTICE_NAME
from onboarding.audit import record
from onboarding.errors import ErrorCode, Problem
from onboarding.validation import (
    check_email,
    check_phone,
    check_text,
    check_time_zone,
    check_website,
)

FORBIDDEN = Problem(
    ErrorCode.FORBIDDEN, "only a practice administrator may change the practice profile"
)


@dataclass
class ProfileInput:
    """Only the fields given change; None (or "") clears an optional field."""

    name: Any = UNSET
    phone: Any = UNSET
    reply_to: Any = UNSET
    sender_name: Any = UNSET
    website: Any = UNSET
    time_zone: Any = UNSET


def _clean(data: ProfileInput, region: str) -> tuple[dict[str, Any], list[Problem]]:
    columns: dict[str, Any] = {}
    problems: list[Problem] = []

    def take(column: str, result: tuple[Any, Problem | None]) -> None:
        value, problem = result
        if problem:
            problems.append(problem)
        else:
            columns[column] = value

    if data.name is not UNSET:
        take("name", check_text("name", data.name or "", max_length=MAX_PRACTICE_NAME))
    if data.phone is not UNSET:
        take("phone", check_phone("phone", data.phone, region=region))
    if data.reply_to is not UNSET:
        take("reply_to", check_email("replyTo", data.reply_to))
    if data.sender_name is not UNSET:
        if data.sender_name is None or not data.sender_name.strip():
            columns["sender_name"] = None
        else:
            take("sender_name", check_text("senderName", data.sender_name, max_length=120))
    if data.website is not UNSET:
        take("website", check_website("website", data.website))
    if data.time_zone is not UNSET:
        take("time_zone", check_time_zone("timeZone", data.time_zone or ""))
    return columns, problems


async def update_practice(
    actor: Actor, staff: StaffUser, data: ProfileInput, *, region: str
) -> tuple[Practice | None, list[Problem]]:
    if not staff.is_admin:
        return None, [FORBIDDEN]
    columns, problems = _clean(data, region)
    if problems:
        return None, problems
    async with in_transaction():
        if columns:
            await Practice.filter(id=staff.practice_id).update(**columns)
        await record(
            actor,
            "practice.updated",
            practice_id=staff.practice_id,
            detail={"fields": sorted(columns)},
        )
    return await Practice.get(id=staff.practice_id), []


PROFILE_FIELDS = tuple(f.name for f in fields(ProfileInput))
