"""Deleting a practice (an operator offboarding a clinic: ``DELETE FROM practice``) works
again: its patients go by the cascade, and the count triggers of migration 0018 no longer
write counts for the practice being deleted.

The cascade deletes the practice's patients in a statement of its own, and the patients'
statement trigger then upserted their -1s into ``patient_status_count`` and
``patient_status_expiry`` for a practice that no longer exists: the foreign key refused
it and with it the whole delete (PostgreSQL; on SQLite the row triggers did the same).
A practice that is gone has no counts to keep, so the triggers now skip its rows; its
count rows go by their own ``ON DELETE CASCADE``.
"""

# ruff: noqa: S608 (SQL assembled from constants in this file only)
import importlib

from tortoise import migrations

from models.migration_ops import RunPerDialect

_0018 = importlib.import_module("models.migrations.0018_status_counts")


def live(rows: str) -> str:
    """``rows`` (a transition table) of practices that still exist: a practice being
    deleted is already gone for the statements its cascade runs, which delete its
    patients and, through ``patient.last_link_id``'s SET NULL, update them."""
    return (
        f"(SELECT * FROM {rows} WHERE EXISTS"
        f" (SELECT 1 FROM practice pr WHERE pr.id = {rows}.practice_id)) {rows}_live"
    )


_NEW = f"SELECT practice_id, status_class, 1 AS d FROM {live('new_rows')}"
_OLD = f"SELECT practice_id, status_class, -1 AS d FROM {live('old_rows')}"
_NEW_EXPIRY = _0018.candidates("postgres", live("new_rows"), "1")
_OLD_EXPIRY = _0018.candidates("postgres", live("old_rows"), "-1")

POSTGRES = [
    # Inserted patients always belong to an existing practice: that branch is 0018's.
    _0018.keep_function(
        "CREATE OR REPLACE FUNCTION",
        _NEW,
        _OLD,
        _NEW_EXPIRY,
        _OLD_EXPIRY,
        inserted=(_0018._NEW, _0018._NEW_EXPIRY),
    ),
]

LIVE = "EXISTS (SELECT 1 FROM practice pr WHERE pr.id = {r}.practice_id)"
_CLASS_MOVED = (
    "(OLD.status_class IS NOT NEW.status_class OR OLD.practice_id IS NOT NEW.practice_id)"
)
_BUCKET_MOVED = (
    f"({_CLASS_MOVED[1:-1]} OR OLD.staff_password_set_at IS NOT NEW.staff_password_set_at"
    " OR OLD.link_open_until IS NOT NEW.link_open_until)"
)
SQLITE = [
    "DROP TRIGGER patient_status_count_delete",
    "DROP TRIGGER patient_status_count_update",
    "DROP TRIGGER patient_status_expiry_update",
    f"CREATE TRIGGER patient_status_count_delete AFTER DELETE ON patient"
    f" WHEN {LIVE.format(r='OLD')}"
    f" BEGIN {_0018._ADD.format(r='OLD', d=-1)} {_0018._add_expiry('OLD', -1)} END",
    f"CREATE TRIGGER patient_status_count_update AFTER UPDATE ON patient"
    f" WHEN {_CLASS_MOVED} AND {LIVE.format(r='NEW')}"
    f" BEGIN {_0018._ADD.format(r='OLD', d=-1)} {_0018._ADD.format(r='NEW', d=1)} END",
    f"CREATE TRIGGER patient_status_expiry_update AFTER UPDATE ON patient"
    f" WHEN {_BUCKET_MOVED} AND {LIVE.format(r='NEW')}"
    f" BEGIN {_0018._add_expiry('OLD', -1)} {_0018._add_expiry('NEW', 1)} END",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0020_link_copy_per_statement")]

    initial = False

    operations = [RunPerDialect({"postgres": POSTGRES, "sqlite": SQLITE})]
