"""Invitation/reset link tokens (SPEC section 3, SECURITY TOK-1..TOK-10): finding the link a
token names.

A token is 256 bits from ``secrets``; only its SHA-256 digest is stored. Links are issued,
revoked and consumed only by the unit of work (``onboarding.unit_of_work``), where single
use is decided by a conditional UPDATE under the patient's lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import utcnow
from core.secrets import digest
from models import LinkToken
from onboarding.errors import ErrorCode
from onboarding.unit_of_work import link_problem


@dataclass(frozen=True)
class LinkState:
    link: LinkToken | None
    error: ErrorCode | None


async def find_link(token: str) -> LinkState:
    """The link a token names, or why it cannot be used, as read outside any lock: a
    first look that spares the lock for garbage; the unit of work looks again."""
    if not token or len(token) > 100:
        return LinkState(None, ErrorCode.TOKEN_INVALID)
    link = await LinkToken.filter(digest=digest(token)).select_related("patient").first()
    return LinkState(link, link_problem(link, link.patient if link else None, utcnow()))
