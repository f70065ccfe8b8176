"""Copies of the status inputs on ``patient``, kept by triggers, so the Onboarding Tool
counts and filters by status over ``patient`` alone (see models/patient.py).

- ``account_active``: the account's owner chose its password or has logged in;
- ``staff_password_set_at``: when staff set the password, while it is a staff-set one;
- ``link_open_until``: the newest link's expiry while it is neither used nor revoked.

They are database-only columns, not model fields, so no ORM ``save()`` of a patient
loaded earlier can write a stale copy back. Triggers, not application code, keep them:
every writer of ``portal_account``, ``link_token`` or ``patient.last_link_id`` (the
workflows, the benchmark's loader, a hand-written fix in psql) keeps them right.
"""

# ruff: noqa: S608 (SQL assembled from constants in this file only)
from tortoise import migrations

from models.migration_ops import RunPerDialect

COLUMNS = {
    "postgres": [
        "ALTER TABLE patient ADD COLUMN account_active BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE patient ADD COLUMN staff_password_set_at TIMESTAMPTZ",
        "ALTER TABLE patient ADD COLUMN link_open_until TIMESTAMPTZ",
    ],
    "sqlite": [
        "ALTER TABLE patient ADD COLUMN account_active INT NOT NULL DEFAULT 0",
        "ALTER TABLE patient ADD COLUMN staff_password_set_at TIMESTAMP",
        "ALTER TABLE patient ADD COLUMN link_open_until TIMESTAMP",
    ],
}

# One definition of each copy, shared by the triggers and the backfill.
ACTIVE = "COALESCE({a}.last_login_at IS NOT NULL OR {a}.password_origin = 'patient', FALSE)"
STAFF_SET_AT = "CASE WHEN {a}.password_origin = 'staff' THEN {a}.password_set_at END"
OPEN_UNTIL = "CASE WHEN {l}.used_at IS NULL AND {l}.revoked_at IS NULL THEN {l}.expires_at END"
ACCOUNT_CHANGED = (
    "(OLD.last_login_at IS NULL) <> (NEW.last_login_at IS NULL)"
    " OR OLD.password_origin IS DISTINCT FROM NEW.password_origin"
    " OR OLD.password_set_at IS DISTINCT FROM NEW.password_set_at"
    " OR OLD.patient_id <> NEW.patient_id"
)
LINK_CHANGED = (
    "OLD.used_at IS DISTINCT FROM NEW.used_at OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at"
)
SET_ACCOUNT = (
    "UPDATE patient SET account_active = {active}, staff_password_set_at = {staff}"
    " WHERE id = NEW.patient_id;"
).format(active=ACTIVE.format(a="NEW"), staff=STAFF_SET_AT.format(a="NEW"))
CLEAR_ACCOUNT = (
    "UPDATE patient SET account_active = FALSE, staff_password_set_at = NULL"
    " WHERE id = OLD.patient_id;"
)
# Only the link a patient points at matters; revoking older ones changes nothing here.
SET_LINK = (
    "UPDATE patient SET link_open_until = {open}"
    " WHERE id = NEW.patient_id AND last_link_id = NEW.id;"
).format(open=OPEN_UNTIL.format(l="NEW"))

BACKFILL = [
    "UPDATE patient SET"
    f" account_active = COALESCE((SELECT {ACTIVE.format(a='a')} FROM portal_account a"
    " WHERE a.patient_id = patient.id), FALSE),"
    f" staff_password_set_at = (SELECT {STAFF_SET_AT.format(a='a')} FROM portal_account a"
    " WHERE a.patient_id = patient.id),"
    f" link_open_until = (SELECT {OPEN_UNTIL.format(l='l')} FROM link_token l"
    " WHERE l.id = patient.last_link_id)"
]

TRIGGERS = {
    "postgres": [
        f"""CREATE FUNCTION patient_copy_account() RETURNS trigger LANGUAGE plpgsql AS $$
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
        "CREATE TRIGGER portal_account_copy_insert AFTER INSERT OR DELETE ON portal_account"
        " FOR EACH ROW EXECUTE FUNCTION patient_copy_account()",
        "CREATE TRIGGER portal_account_copy_update AFTER UPDATE ON portal_account"
        f" FOR EACH ROW WHEN ({ACCOUNT_CHANGED}) EXECUTE FUNCTION patient_copy_account()",
        f"""CREATE FUNCTION patient_copy_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  {SET_LINK}
  RETURN NULL;
END $$""",
        "CREATE TRIGGER link_token_copy AFTER UPDATE ON link_token"
        f" FOR EACH ROW WHEN ({LINK_CHANGED}) EXECUTE FUNCTION patient_copy_link()",
        f"""CREATE FUNCTION patient_copy_last_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.link_open_until := (SELECT {OPEN_UNTIL.format(l="l")} FROM link_token l
                          WHERE l.id = NEW.last_link_id);
  RETURN NEW;
END $$""",
        "CREATE TRIGGER patient_copy_last_link BEFORE UPDATE OF last_link_id"
        " ON patient FOR EACH ROW EXECUTE FUNCTION patient_copy_last_link()",
    ],
    "sqlite": [
        f"CREATE TRIGGER portal_account_copy_insert AFTER INSERT ON portal_account"
        f" BEGIN {SET_ACCOUNT} END",
        f"CREATE TRIGGER portal_account_copy_update AFTER UPDATE ON portal_account"
        f" WHEN {ACCOUNT_CHANGED} BEGIN {CLEAR_ACCOUNT[:-1]} AND OLD.patient_id <> NEW.patient_id;"
        f" {SET_ACCOUNT} END",
        f"CREATE TRIGGER portal_account_copy_delete AFTER DELETE ON portal_account"
        f" BEGIN {CLEAR_ACCOUNT} END",
        f"CREATE TRIGGER link_token_copy AFTER UPDATE ON link_token"
        f" WHEN {LINK_CHANGED} BEGIN {SET_LINK} END",
        "CREATE TRIGGER patient_copy_last_link AFTER UPDATE OF last_link_id ON patient"
        f" BEGIN UPDATE patient SET link_open_until = (SELECT {OPEN_UNTIL.format(l='l')}"
        " FROM link_token l WHERE l.id = NEW.last_link_id) WHERE id = NEW.id; END",
    ],
}


class Migration(migrations.Migration):
    dependencies = [("models", "0005_no_constraints_on_audit_and_outbox")]

    initial = False

    operations = [
        RunPerDialect(COLUMNS),
        RunPerDialect({"postgres": BACKFILL, "sqlite": BACKFILL}),
        RunPerDialect(TRIGGERS),
    ]
