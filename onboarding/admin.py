"""Practice and staff provisioning (the CLI's create-practice / create-staff)."""

from __future__ import annotations

from core.clock import utcnow
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
        practice_id=practice_id,
        name=cleaned,
        token_digest=digest(token),
        token_issued_at=utcnow(),
        is_admin=admin,
    )
    return staff, token


async def list_staff(practice_id: int | None = None) -> list[StaffUser]:
    query = StaffUser.all().order_by("practice_id", "id")
    if practice_id is not None:
        query = query.filter(practice_id=practice_id)
    return await query


async def revoke_staff(staff_id: int) -> StaffUser:
    """The token stops working at once (the next request answers UNAUTHENTICATED)."""
    staff = await StaffUser.get_or_none(id=staff_id)
    if staff is None:
        raise LookupError(f"no staff user with id {staff_id}")
    if staff.revoked_at is None:
        staff.revoked_at = utcnow()
        await staff.save(update_fields=["revoked_at"])
    return staff


async def rotate_staff_token(staff_id: int) -> tuple[StaffUser, str]:
    """A new token (shown once) replaces the old one, which stops working at once; the
    expiry counts from now. Also brings a revoked or expired staff user back."""
    staff = await StaffUser.get_or_none(id=staff_id)
    if staff is None:
        raise LookupError(f"no staff user with id {staff_id}")
    token = STAFF_PREFIX + new_token()
    staff.token_digest = digest(token)
    staff.token_issued_at = utcnow()
    staff.revoked_at = None
    staff.last_used_at = None
    await staff.save(
        update_fields=["token_digest", "token_issued_at", "revoked_at", "last_used_at"]
    )
    return staff, token
