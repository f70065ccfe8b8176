"""Status inputs follow the unit-of-work rules (issue 9).

- ``account_active`` now means: the patient chose the password, or logged in with the
  staff-set password they have now (a login from before staff set it no longer counts).
  A staff-set password is CREDENTIALS_ISSUED until the patient logs in with it, and one
  never used expires its lifetime after staff set it, whatever happened before.
- Charts already INACTIVE or DECEASED lose portal access, their outstanding links and
  their sessions, as updatePatient now does when a chart becomes so.
"""

# ruff: noqa: S608 (SQL assembled from constants in this file only)
from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

from core.clock import utcnow
from models.migration_ops import RunPerDialect

ACTIVE = (
    "COALESCE({a}.password_origin = 'patient' OR ({a}.password_origin = 'staff'"
    " AND {a}.last_login_at >= {a}.password_set_at), FALSE)"
)
STAFF_SET_AT = "CASE WHEN {a}.password_origin = 'staff' THEN {a}.password_set_at END"
ACCOUNT_CHANGED = (
    "OLD.last_login_at IS DISTINCT FROM NEW.last_login_at"
    " OR OLD.password_origin IS DISTINCT FROM NEW.password_origin"
    " OR OLD.password_set_at IS DISTINCT FROM NEW.password_set_at"
    " OR OLD.patient_id <> NEW.patient_id"
)
SET_ACCOUNT = (
    "UPDATE patient SET account_active = {active}, staff_password_set_at = {staff}"
    " WHERE id = NEW.patient_id;"
).format(active=ACTIVE.format(a="NEW"), staff=STAFF_SET_AT.format(a="NEW"))
CLEAR_ACCOUNT = (
    "UPDATE patient SET account_active = FALSE, staff_password_set_at = NULL"
    " WHERE id = OLD.patient_id;"
)
BACKFILL = (
    "UPDATE patient SET"
    f" account_active = COALESCE((SELECT {ACTIVE.format(a='a')} FROM portal_account a"
    " WHERE a.patient_id = patient.id), FALSE)"
)

TRIGGERS = {
    "postgres": [
        f"""CREATE OR REPLACE FUNCTION patient_copy_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    {CLEAR_ACCOUNT}
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' THEN
    IF OLD.patient_id <> NEW.patient_id THEN {CLEAR_ACCOUNT} END IF;
  END IF;
  {SET_ACCOUNT}
  RETURN NULL;
END $$""",
        "DROP TRIGGER portal_account_copy_update ON portal_account",
        "CREATE TRIGGER portal_account_copy_update AFTER UPDATE ON portal_account"
        f" FOR EACH ROW WHEN ({ACCOUNT_CHANGED}) EXECUTE FUNCTION patient_copy_account()",
        BACKFILL,
    ],
    "sqlite": [
        "DROP TRIGGER portal_account_copy_insert",
        "DROP TRIGGER portal_account_copy_update",
        f"CREATE TRIGGER portal_account_copy_insert AFTER INSERT ON portal_account"
        f" BEGIN {SET_ACCOUNT} END",
        f"CREATE TRIGGER portal_account_copy_update AFTER UPDATE ON portal_account"
        f" WHEN {ACCOUNT_CHANGED} BEGIN {CLEAR_ACCOUNT[:-1]} AND OLD.patient_id <> NEW.patient_id;"
        f" {SET_ACCOUNT} END",
        BACKFILL,
    ],
}

INACTIVE = "SELECT id FROM patient WHERE chart_status NOT IN ('ACTIVE', 'PROSPECTIVE')"


async def close_inactive_charts(apps: Any, state_editor: Any) -> None:
    client = state_editor.client
    postgres = client.capabilities.dialect == "postgres"
    now: Any = utcnow()
    mark = "$1" if postgres else "?"
    if not postgres:
        now = now.isoformat(sep=" ")  # how Tortoise writes datetimes on SQLite
    await client.execute_query(
        f"UPDATE link_token SET revoked_at = {mark}, revoke_reason = 'portal_disabled'"
        f" WHERE used_at IS NULL AND revoked_at IS NULL AND patient_id IN ({INACTIVE})",
        [now],
    )
    await client.execute_query(
        f"UPDATE patient_session SET revoked_at = {mark} WHERE revoked_at IS NULL AND"
        f" account_id IN (SELECT id FROM portal_account WHERE patient_id IN ({INACTIVE}))",
        [now],
    )
    await client.execute_query(
        f"UPDATE patient SET portal_enabled = FALSE WHERE portal_enabled AND id IN ({INACTIVE})"
    )


class Migration(migrations.Migration):
    dependencies = [("models", "0007_onboarding_indexes")]

    initial = False

    operations = [RunPerDialect(TRIGGERS), ops.RunPython(close_inactive_charts)]
