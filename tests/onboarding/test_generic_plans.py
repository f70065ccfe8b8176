"""Bulk statements keep their speed in PostgreSQL's generic plans (issue 15).

asyncpg prepares every statement, and from a statement's sixth run on a connection
PostgreSQL may answer it from a generic plan, in which an array parameter is no
constant. ``NOT (id = ANY(array))`` is then searched linearly for every row: the
revocation of a 10,000-patient invitation took 0.7 s instead of 0.2 s from the sixth
invitation a server process sent. These tests plan the statements as such a server
would, without waiting for six runs."""

from typing import Any

import pytest
from tortoise import connections

from models import RevokeReason
from onboarding.actor import SYSTEM
from onboarding.unit_of_work import patient_change
from tests.conftest import BACKEND, Staff

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="plan caching: PostgreSQL")


async def generic_plan(sql: str, values: list[Any]) -> str:
    """The generic plan PostgreSQL keeps for ``sql`` prepared, as EXPLAIN prints it (a
    generic plan does not depend on the values: NULL stands for each)."""
    conn = connections.get("default")
    literals = ", ".join("NULL" for _ in values)
    async with conn.acquire_connection() as raw:
        await raw.execute(f"PREPARE probe AS {sql}")
        try:
            async with raw.transaction():
                await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                rows = await raw.fetch(f"EXPLAIN EXECUTE probe({literals})")
        finally:
            # Outside the transaction, so that a failure above is not hidden by
            # "current transaction is aborted".
            await raw.execute("DEALLOCATE probe")
    return "\n".join(r[0] for r in rows)


async def test_revoking_all_links_but_the_new_ones_stays_hashed(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the statement the unit of work sends to revoke a bulk invitation's older
    # links (every outstanding link of these patients but the new ones)
    sent: list[tuple[str, list[Any]]] = []

    async with patient_change(SYSTEM, [], practice_id=staff.practice_id) as change:
        conn = connections.get("default")
        real = type(conn).execute_query

        async def spy(self: Any, sql: str, values: list[Any] | None = None) -> Any:
            sent.append((sql, list(values or [])))
            return await real(self, sql, values)

        monkeypatch.setattr(type(conn), "execute_query", spy)
        await change.revoke_links([1, 2, 3], RevokeReason.SUPERSEDED, keep=[7, 8, 9])
        monkeypatch.undo()
    [(sql, values)] = sent
    # when PostgreSQL plans it once for every run
    plan = await generic_plan(sql, values)
    # then the kept ids are looked up in a hash, not searched row by row
    assert "hashed SubPlan" in plan, plan
