"""Links name their practice and their creator without a foreign key constraint (see
``models/link.py`` for why): a 10,000-patient invitation no longer pays two per-row key
checks (80-100 ms of its links statement, issue 15). The patient's key stays: a link
goes with its patient.

As in 0005, the constraints are dropped on PostgreSQL, where the bulk paths run; SQLite
keeps those 0001 created (Tortoise would rebuild the table to drop them)."""

import importlib

from tortoise import migrations
from tortoise.fields.base import OnDelete

_0005 = importlib.import_module("models.migrations.0005_no_constraints_on_audit_and_outbox")


class Migration(migrations.Migration):
    dependencies = [("models", "0021_counts_of_a_deleted_practice")]

    initial = False

    operations = [
        _0005.DropForeignKey(
            "LinkToken",
            "practice",
            "link_token",
            _0005._fk("models.Practice", "practice_id", null=False),
        ),
        _0005.DropForeignKey(
            "LinkToken",
            "created_by",
            "link_token",
            _0005._fk("models.StaffUser", "created_by_id", on_delete=OnDelete.SET_NULL),
        ),
    ]
