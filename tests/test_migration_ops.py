"""Raw migration statements stay inside the migration's transaction (models.migration_ops):
a migration that fails half-way leaves nothing behind, so the next start runs it again
from the beginning instead of failing on what its first statements had committed."""

from __future__ import annotations

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from models.migration_ops import run_statements
from tests.conftest import BACKEND, Api


async def columns_of(table: str) -> set[str]:
    conn = connections.get("default")
    if BACKEND == "sqlite":
        rows = await conn.execute_query_dict(f"PRAGMA table_xinfo({table})")
        return {r["name"] for r in rows}
    rows = await conn.execute_query_dict(
        "SELECT column_name AS name FROM information_schema.columns WHERE table_name = $1",
        [table],
    )
    return {r["name"] for r in rows}


async def test_a_migration_failing_half_way_leaves_nothing_behind(api: Api) -> None:
    statements = [
        "CREATE TABLE migration_scratch (id INT)",
        "ALTER TABLE patient ADD COLUMN migration_scratch_col INT",
        "CREATE TRIGGER this_is_not_sql",
    ]
    with pytest.raises(Exception):  # noqa: B017 (each driver raises its own error type)
        async with in_transaction() as tx:
            await run_statements(tx, statements)
    assert "migration_scratch_col" not in await columns_of("patient")
    assert await columns_of("migration_scratch") == set()
    # and run again (what the next start does), it goes through
    async with in_transaction() as tx:
        await run_statements(tx, statements[:2])
    assert "migration_scratch_col" in await columns_of("patient")
