"""``invitation.expired`` events (SPEC 8.7): an expiry is a change of portal state that
no request makes, so a periodic job finds it (next to the reminders: in the server and
in ``portal mail-worker``).

A patient's newest link that expired unused leaves its expiry in
``patient.link_open_until`` (migration 0006 keeps it; a used or revoked link clears
it). The event is due when that time has passed and the patient has no
``invitation.expired`` event since; it is written under the patient's lock after the
same check, so any number of workers write it once. Expiries older than
:data:`LOOKBACK` are not announced (a new deployment does not replay history).
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from tortoise import connections

from core.clock import utcnow
from onboarding import events
from onboarding.actor import SYSTEM
from onboarding.sql import Params
from onboarding.unit_of_work import patient_change

log = structlog.get_logger("onboarding.expiry")

LOOKBACK = timedelta(days=2)


def _due_sql(params: Params, extra: str = "") -> str:
    now = params(utcnow())
    return (
        "SELECT p.id, p.practice_id FROM patient p"  # noqa: S608 (constants and parameters)
        f" WHERE p.link_open_until <= {now} AND p.link_open_until > {params(utcnow() - LOOKBACK)}"
        " AND p.portal_enabled AND NOT EXISTS (SELECT 1 FROM portal_event e"
        " WHERE e.patient_id = p.id AND e.type = 'invitation.expired'"
        f" AND e.occurred_at >= p.link_open_until){extra}"
    )


async def announce_expired_invitations(batch: int = 1000) -> int:
    conn = connections.get("default")
    params = Params(conn.capabilities.dialect)
    rows = await conn.execute_query_dict(
        _due_sql(params, f" ORDER BY p.id LIMIT {params(batch)}"), params.values
    )
    by_practice: dict[int, list[int]] = {}
    for row in rows:
        by_practice.setdefault(row["practice_id"], []).append(row["id"])
    written = 0
    for practice_id, ids in by_practice.items():
        async with patient_change(SYSTEM, ids, practice_id=practice_id, bulk=True) as change:
            # Again under the lock: another worker may have written it meanwhile.
            check = Params(params.dialect)
            marks = ", ".join(check(i) for i in ids)
            still = await connections.get("default").execute_query_dict(
                _due_sql(check, f" AND p.id IN ({marks})"), check.values
            )
            due = [row["id"] for row in still]
            if due:
                await change.emit(events.INVITATION_EXPIRED, due, practice_id=practice_id)
                written += len(due)
    if written:
        log.info("invitations.expired_announced", count=written)
    return written
