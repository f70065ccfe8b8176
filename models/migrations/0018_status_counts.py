"""Counts per status kept per practice, exact at any instant, with no sweeper (issue 15
item 4: a page of a 250,000-patient practice with ``totalCount``/``statusCounts``).

The status rule (``onboarding/status.py``) has two branches that depend on the time:
CREDENTIALS_ISSUED (a staff-set password inside its lifetime) and INVITED (the newest
link still open). Drop those two branches and what is left depends on stored columns
only: the *status class*, ``patient.status_class`` below (DISABLED, ACTIVE, NO_EMAIL,
INVITATION_EXPIRED or NOT_INVITED). A patient's status is its class unless one of the
two time-dependent branches holds right now; those patients are found at read time from
two small range indexes (staff-set passwords still inside their lifetime; links still
open) and moved from their class to their status (``onboarding.listing``).

- ``patient.status_class`` is a generated column (stored on PostgreSQL, virtual on
  SQLite, which can only add virtual ones): no writer can set it wrong or forget it,
  whether it goes through the ORM, a bulk loader or psql, and existing rows have it at
  once (no backfill statement to get wrong).
- ``patient_status_count`` holds, per practice and class, how many patients are in it.
  Triggers on ``patient`` keep it, so every path that changes a class input (the copies
  kept by the triggers of migration 0006 included: they write ``patient`` too), inserts,
  deletes, cascades and practice moves, keep it right. PostgreSQL uses statement
  triggers with transition tables: a bulk insert of 10,000 patients is one upsert per
  class, not 10,000; rows are upserted in (practice, class) order, so two writers lock
  count rows in the same order. An UPDATE that changes no class writes nothing.
  TRUNCATE of ``patient`` empties the table too.
- Indexes: ``patient_status_class`` (practice, class, name order) so a status filter on
  one class pages in name order without walking the practice; partial range indexes
  over staff-set passwords and open links for the read-time part and for the
  CREDENTIALS_ISSUED/INVITED filters.
"""

# ruff: noqa: S608 (SQL assembled from constants in this file only)
from tortoise import migrations

from models.migration_ops import RunPerDialect

# The status rule of onboarding/status.py without its two time-dependent branches, in
# the same order. onboarding.status.STATIC_OF states which statuses fall back to which.
STATUS_CLASS = """CASE
 WHEN NOT portal_enabled THEN 'DISABLED'
 WHEN account_active THEN 'ACTIVE'
 WHEN email_key IS NULL AND NOT sms_consent THEN 'NO_EMAIL'
 WHEN last_link_id IS NOT NULL THEN 'INVITATION_EXPIRED'
 ELSE 'NOT_INVITED' END"""

TABLE = (
    "CREATE TABLE patient_status_count ("
    " practice_id INT NOT NULL REFERENCES practice (id) ON DELETE CASCADE,"
    " status_class VARCHAR(20) NOT NULL,"
    " n BIGINT NOT NULL,"
    " PRIMARY KEY (practice_id, status_class))"
)
# Patients a time-dependent status can take out of their class, counted per bucket of
# the instant that decides it: "S", staff-set passwords by the hour they were set
# (CREDENTIALS_ISSUED while set_at > now - lifetime; the lifetime is a setting, so the
# set time is kept, not the end); "L", open links by the ten minutes they expire in
# (INVITED while open_until > now). onboarding.status holds the same widths.
STAFF_BUCKET_SECONDS = 3600
LINK_BUCKET_SECONDS = 600
CI_CLASSES = "('NO_EMAIL', 'INVITATION_EXPIRED', 'NOT_INVITED')"  # enabled, not active
INVITED_CLASSES = "('INVITATION_EXPIRED', 'NOT_INVITED')"  # ... and reachable
EXPIRY_TABLE = (
    "CREATE TABLE patient_status_expiry ("
    " practice_id INT NOT NULL REFERENCES practice (id) ON DELETE CASCADE,"
    " kind CHAR(1) NOT NULL,"
    " bucket BIGINT NOT NULL,"
    " status_class VARCHAR(20) NOT NULL,"
    " n BIGINT NOT NULL,"
    " PRIMARY KEY (practice_id, kind, bucket, status_class))"
)
BUCKET = {
    "postgres": "floor(extract(epoch FROM {col}) / {width})::bigint",
    "sqlite": "CAST(strftime('%s', {col}) AS INTEGER) / {width}",
}


def candidates(dialect: str, rows: str, d: str) -> str:
    """(practice_id, kind, bucket, status_class, d) of the patients in ``rows``."""
    staff = BUCKET[dialect].format(col="staff_password_set_at", width=STAFF_BUCKET_SECONDS)
    link = BUCKET[dialect].format(col="link_open_until", width=LINK_BUCKET_SECONDS)
    return (
        f"SELECT practice_id, 'S' AS kind, {staff} AS bucket, status_class, {d} AS d FROM {rows}"
        f" WHERE staff_password_set_at IS NOT NULL AND status_class IN {CI_CLASSES}"
        f" UNION ALL SELECT practice_id, 'L', {link}, status_class, {d} FROM {rows}"
        f" WHERE link_open_until IS NOT NULL AND status_class IN {INVITED_CLASSES}"
    )


def expiry_backfill(dialect: str) -> str:
    return (
        "INSERT INTO patient_status_expiry (practice_id, kind, bucket, status_class, n)"
        f" SELECT practice_id, kind, bucket, status_class, SUM(d) FROM ({candidates(dialect, 'patient', '1')}) x"
        " GROUP BY practice_id, kind, bucket, status_class"
    )


BACKFILL = (
    "INSERT INTO patient_status_count (practice_id, status_class, n)"
    " SELECT practice_id, status_class, COUNT(*) FROM patient GROUP BY practice_id, status_class"
)
INDEXES = [
    "CREATE INDEX patient_status_class ON patient"
    " (practice_id, status_class, last_name_key, first_name_key, id)",
    "CREATE INDEX patient_staff_password_fresh ON patient (practice_id, staff_password_set_at)"
    " WHERE staff_password_set_at IS NOT NULL",
    "CREATE INDEX patient_link_open ON patient (practice_id, link_open_until)"
    " WHERE link_open_until IS NOT NULL",
    # Open links beside a staff-set password (fresh or lapsed): the few patients both
    # time-dependent statuses may claim at once, counted at read time.
    "CREATE INDEX patient_link_open_staff ON patient (practice_id, link_open_until)"
    " WHERE link_open_until IS NOT NULL AND staff_password_set_at IS NOT NULL",
]

# One upsert of the deltas of a statement, in (practice, class) order.
_UPSERT = (
    "INSERT INTO patient_status_count AS c (practice_id, status_class, n)"
    " SELECT practice_id, status_class, SUM(d) FROM ({rows}) x"
    " GROUP BY practice_id, status_class HAVING SUM(d) <> 0"
    " ORDER BY practice_id, status_class"
    " ON CONFLICT (practice_id, status_class) DO UPDATE SET n = c.n + EXCLUDED.n;"
)
_NEW = "SELECT practice_id, status_class, 1 AS d FROM new_rows"
_OLD = "SELECT practice_id, status_class, -1 AS d FROM old_rows"
_EXPIRY_UPSERT = (
    "INSERT INTO patient_status_expiry AS c (practice_id, kind, bucket, status_class, n)"
    " SELECT practice_id, kind, bucket, status_class, SUM(d) FROM ({rows}) x"
    " GROUP BY practice_id, kind, bucket, status_class HAVING SUM(d) <> 0"
    " ORDER BY practice_id, kind, bucket, status_class"
    " ON CONFLICT (practice_id, kind, bucket, status_class) DO UPDATE SET n = c.n + EXCLUDED.n;"
)
_NEW_EXPIRY = candidates("postgres", "new_rows", "1")
_OLD_EXPIRY = candidates("postgres", "old_rows", "-1")

# The count rows are shared by every writer of a practice and stay locked until commit.
# Each statement upserts them in key order, but a transaction of several statements (a
# redemption: the link's bucket, then the patient's class) can take them in another
# order than a concurrent one (an invitation: classes, then the same bucket) and the two
# deadlock. So the first statement of a transaction that changes a practice's counts
# takes that practice's transaction-scoped advisory lock, practices in id order: the
# count rows are then only ever updated by one transaction per practice at a time. It is
# taken after the statement's own patient rows are written, and every workflow locks its
# patients before its first write (onboarding.unit_of_work), so a transaction holding it
# never waits for a patient row held by one waiting for it. Statements that change no
# class and no bucket (a rename) take nothing.
COUNT_LOCK_KEY = 0x5343  # "SC": the first key of pg_advisory_xact_lock(int, int)
_LOCK = (
    "FOR practice IN SELECT practice_id FROM ("
    " SELECT practice_id FROM ({rows}) x GROUP BY practice_id, status_class HAVING SUM(d) <> 0"
    " UNION SELECT practice_id FROM ({expiry}) y"
    " GROUP BY practice_id, kind, bucket, status_class HAVING SUM(d) <> 0"
    f") changed ORDER BY practice_id LOOP PERFORM pg_advisory_xact_lock({COUNT_LOCK_KEY}, practice);"
    " END LOOP;"
)


def keep_function(
    create: str,
    new: str,
    old: str,
    new_expiry: str,
    old_expiry: str,
    *,
    inserted: tuple[str, str] | None = None,
) -> str:
    """The trigger function keeping the counts, over the deltas ``new``/``old`` (rows of
    the transition tables) and their expiry candidates; ``inserted`` (rows, expiry) for
    the INSERT branch, if other than ``new``. Migration 0021 rebuilds it with other rows."""
    ins, ins_expiry = inserted or (new, new_expiry)
    both, both_expiry = new + " UNION ALL " + old, new_expiry + " UNION ALL " + old_expiry
    return f"""{create} patient_status_count_keep() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  practice INT;
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_LOCK.format(rows=ins, expiry=ins_expiry)}
    {_UPSERT.format(rows=ins)}
    {_EXPIRY_UPSERT.format(rows=ins_expiry)}
  ELSIF TG_OP = 'DELETE' THEN
    {_LOCK.format(rows=old, expiry=old_expiry)}
    {_UPSERT.format(rows=old)}
    {_EXPIRY_UPSERT.format(rows=old_expiry)}
  ELSE
    {_LOCK.format(rows=both, expiry=both_expiry)}
    {_UPSERT.format(rows=both)}
    {_EXPIRY_UPSERT.format(rows=both_expiry)}
  END IF;
  RETURN NULL;
END $$"""


POSTGRES = [
    f"ALTER TABLE patient ADD COLUMN status_class VARCHAR(20) GENERATED ALWAYS AS ({STATUS_CLASS}) STORED",
    TABLE,
    BACKFILL,
    EXPIRY_TABLE,
    expiry_backfill("postgres"),
    *INDEXES,
    keep_function("CREATE FUNCTION", _NEW, _OLD, _NEW_EXPIRY, _OLD_EXPIRY),
    # A trigger with transition tables serves one event.
    "CREATE TRIGGER patient_status_count_insert AFTER INSERT ON patient"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION patient_status_count_keep()",
    "CREATE TRIGGER patient_status_count_update AFTER UPDATE ON patient"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION patient_status_count_keep()",
    "CREATE TRIGGER patient_status_count_delete AFTER DELETE ON patient"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION patient_status_count_keep()",
    """CREATE FUNCTION patient_status_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM patient_status_count;
  DELETE FROM patient_status_expiry;
  RETURN NULL;
END $$""",
    "CREATE TRIGGER patient_status_count_truncate AFTER TRUNCATE ON patient"
    " FOR EACH STATEMENT EXECUTE FUNCTION patient_status_count_truncate()",
]

_ADD = (
    "INSERT INTO patient_status_count (practice_id, status_class, n)"
    " VALUES ({r}.practice_id, {r}.status_class, {d})"
    " ON CONFLICT (practice_id, status_class) DO UPDATE SET n = n + {d};"
)


def _add_expiry(r: str, d: int) -> str:
    staff = BUCKET["sqlite"].format(col=f"{r}.staff_password_set_at", width=STAFF_BUCKET_SECONDS)
    link = BUCKET["sqlite"].format(col=f"{r}.link_open_until", width=LINK_BUCKET_SECONDS)
    upsert = (
        "INSERT INTO patient_status_expiry (practice_id, kind, bucket, status_class, n)"
        " SELECT {r}.practice_id, '{kind}', {bucket}, {r}.status_class, {d} WHERE {cond}"
        f" ON CONFLICT (practice_id, kind, bucket, status_class) DO UPDATE SET n = n + {d};"
    )
    return upsert.format(
        r=r,
        kind="S",
        bucket=staff,
        d=d,
        cond=f"{r}.staff_password_set_at IS NOT NULL AND {r}.status_class IN {CI_CLASSES}",
    ) + upsert.format(
        r=r,
        kind="L",
        bucket=link,
        d=d,
        cond=f"{r}.link_open_until IS NOT NULL AND {r}.status_class IN {INVITED_CLASSES}",
    )


SQLITE = [
    f"ALTER TABLE patient ADD COLUMN status_class TEXT GENERATED ALWAYS AS ({STATUS_CLASS}) VIRTUAL",
    TABLE,
    BACKFILL,
    EXPIRY_TABLE,
    expiry_backfill("sqlite"),
    *INDEXES,
    f"CREATE TRIGGER patient_status_count_insert AFTER INSERT ON patient"
    f" BEGIN {_ADD.format(r='NEW', d=1)} {_add_expiry('NEW', 1)} END",
    f"CREATE TRIGGER patient_status_count_delete AFTER DELETE ON patient"
    f" BEGIN {_ADD.format(r='OLD', d=-1)} {_add_expiry('OLD', -1)} END",
    # No column list: whatever column a future class reads, a change of class is caught.
    "CREATE TRIGGER patient_status_count_update AFTER UPDATE ON patient"
    " WHEN OLD.status_class IS NOT NEW.status_class OR OLD.practice_id IS NOT NEW.practice_id"
    f" BEGIN {_ADD.format(r='OLD', d=-1)} {_ADD.format(r='NEW', d=1)} END",
    "CREATE TRIGGER patient_status_expiry_update AFTER UPDATE ON patient"
    " WHEN OLD.status_class IS NOT NEW.status_class OR OLD.practice_id IS NOT NEW.practice_id"
    " OR OLD.staff_password_set_at IS NOT NEW.staff_password_set_at"
    " OR OLD.link_open_until IS NOT NEW.link_open_until"
    f" BEGIN {_add_expiry('OLD', -1)} {_add_expiry('NEW', 1)} END",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0017_outbox_claims")]

    initial = False

    operations = [RunPerDialect({"postgres": POSTGRES, "sqlite": SQLITE})]
