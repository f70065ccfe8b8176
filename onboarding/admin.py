"""Practice and staff provisioning (the CLI's create-practice / create-staff)."""

from __future__ import annotations

from core.secrets import digest, new_token
from models import Practice, StaffUser
from onboarding.validation import check_text

STAFF_PREFIX = "stf_"


# The name goes into every subject line, which mail clients cut off when it is long.
MAX_PRACTICE_NAME = 120


async def create_practice(name: str) -> Practice:
    cleaned, problem = check_text("name", name, max_length=MAX_PRACTICE_NAME)
    if problem:
        raise ValueError(problem.message)
    return await Practice.create(name=cleaned)


async def create_staff(
    practice_id: int, name: str, *, admin: bool = False
) -> tuple[StaffUser, str]:
    """Returns the staff user and its bearer token; the token is shown once and only its
    digest is stored. ``admin`` makes a practice administrator (edits the profile)."""
    cleaned, problem = check_text("name", name, max_length=200)
    if problem:
        raise ValueError(problem.message)
    if not await Practice.exists(id=practice_id):
        raise LookupError(f"no practice with id {practice_id}")
    token = STAFF_PREFIX + new_token()
    staff = await StaffUser.create(
        practice_id=practice_id, name=cleaned, token_digest=digest(token), is_admin=admin
    )
    return staff, token
