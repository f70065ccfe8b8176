"""Migration operations Tortoise does not offer, shared by the files in migrations/."""

from __future__ import annotations

from typing import Any

from tortoise.migrations import operations as ops


async def run_statements(client: Any, statements: list[str]) -> None:
    """Run a migration's raw statements inside its transaction. On SQLite each one goes
    through ``execute_query`` (one statement each, a trigger body included): the
    client's ``execute_script`` is ``sqlite3.executescript``, which COMMITs the open
    transaction first, so a migration failing half-way left its first statements
    committed and unrecorded, and every later start failed on them again (e.g.
    "duplicate column name"). On PostgreSQL ``execute_script`` stays in the transaction
    and takes several statements (DO blocks, functions)."""
    sqlite = client.capabilities.dialect == "sqlite"
    for statement in statements:
        if sqlite:
            await client.execute_query(statement)
        else:
            await client.execute_script(statement)


class RunPerDialect(ops.RunSQL):
    """Raw SQL chosen by the database's dialect (triggers and indexes that exist on one
    dialect only); a dialect with no entry runs nothing. On SQLite every entry must be
    one statement (see ``run_statements``)."""

    def __init__(self, statements: dict[str, list[str]]) -> None:
        super().__init__(sql="")
        self.statements = statements

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is None:
            return
        client = state_editor.client
        await run_statements(client, self.statements.get(client.capabilities.dialect, []))

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        raise NotImplementedError("not reversible")
