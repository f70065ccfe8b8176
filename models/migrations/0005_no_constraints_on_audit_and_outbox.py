"""Audit events and outbox rows name their practice, patient and link without a foreign
key constraint (see the models for why).

Tortoise's AlterField does not drop a constraint when ``db_constraint`` turns False (and
on SQLite it rebuilds the table with ON DELETE CASCADE), so :class:`DropForeignKey`
records the new field in the migration state and drops the constraint itself on
PostgreSQL, where the bulk paths run. SQLite keeps the constraints 0001 created."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class DropForeignKey(ops.AlterField):
    def __init__(self, model_name: str, name: str, table: str, field: fields.Field) -> None:
        super().__init__(model_name=model_name, name=name, field=field)
        self.constraint = f"{table}_{name}_id_fkey"  # PostgreSQL's default name
        self.table = table

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor is None or state_editor.client.capabilities.dialect != "postgres":
            return
        await state_editor.client.execute_script(
            f'ALTER TABLE "{self.table}" DROP CONSTRAINT IF EXISTS "{self.constraint}"'
        )

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        raise NotImplementedError("constraints dropped by 0005 are not put back")


def _fk(
    model: str, column: str, null: bool = True, on_delete: OnDelete = OnDelete.CASCADE
) -> fields.Field:
    """The field as a migration state records it, without its database constraint
    (0022 uses it too)."""
    return fields.ForeignKeyField(  # type: ignore[call-overload]
        model,
        source_field=column,
        null=null,
        db_constraint=False,
        to_field="id",
        related_name=False,
        on_delete=on_delete,
    )


class Migration(migrations.Migration):
    dependencies = [("models", "0004_outbox_template_params")]

    initial = False

    operations = [
        DropForeignKey("AuditEvent", "patient", "audit_event", _fk("models.Patient", "patient_id")),
        DropForeignKey(
            "AuditEvent", "practice", "audit_event", _fk("models.Practice", "practice_id")
        ),
        DropForeignKey(
            "OutboxMessage", "link", "outbox_message", _fk("models.LinkToken", "link_id")
        ),
        DropForeignKey(
            "OutboxMessage", "patient", "outbox_message", _fk("models.Patient", "patient_id")
        ),
        DropForeignKey(
            "OutboxMessage",
            "practice",
            "outbox_message",
            _fk("models.Practice", "practice_id", null=False),
        ),
    ]
