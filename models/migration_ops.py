"""Migration operations Tortoise does not offer, shared by the files in migrations/."""

from __future__ import annotations

from tortoise.migrations import operations as ops


class RunPerDialect(ops.RunSQL):
    """Raw SQL chosen by the database's dialect (triggers and indexes that exist on one
    dialect only); a dialect with no entry runs nothing."""

    def __init__(self, statements: dict[str, list[str]]) -> None:
        super().__init__(sql="")
        self.statements = statements

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is None:
            return
        client = state_editor.client
        for statement in self.statements.get(client.capabilities.dialect, []):
            await client.execute_script(statement)

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        raise NotImplementedError("not reversible")
