"""Search that does not grow with the database (issue 15 item 4): the trigram index of
migration 0007 spans every practice, so a term's matches in *all* practices were fetched
and then filtered to the caller's one. At 1,000,000 patients a search in the
250,000-patient practice read 4,672 buffers against 736 in a 22,000-patient practice of
a 100,000-patient database; with the practice in the index (``btree_gin`` lets a GIN
index hold the integer column beside the trigrams) it reads 2,817: only that practice's
matches (``python -m bench.plans --shape search``, docs/onboarding-speed.md).

``btree_gin`` ships with PostgreSQL and is a trusted extension (PostgreSQL 13+), like
``pg_trgm``. Where either cannot be created the old index stays and search works as
before. The expression is ``onboarding.listing.SEARCH_TEXT``, character for character,
so the planner matches it. SQLite has no trigram index: nothing to do.
"""

# ruff: noqa: S608 (SQL assembled from constants in this file only)
import importlib

from tortoise import migrations

from models.migration_ops import RunPerDialect

SEARCH_TEXT = importlib.import_module("models.migrations.0007_onboarding_indexes").SEARCH_TEXT

INDEX = (
    "CREATE INDEX IF NOT EXISTS patient_search_trgm_practice ON patient"
    f" USING gin (practice_id, {SEARCH_TEXT} gin_trgm_ops)"
)

POSTGRES = [
    """DO $$ BEGIN
  CREATE EXTENSION IF NOT EXISTS btree_gin;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'btree_gin unavailable (%): search keeps the index of every practice', SQLERRM;
END $$""",
    f"""DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')
     AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'btree_gin') THEN
    EXECUTE '{INDEX.replace("'", "''")}';
    DROP INDEX IF EXISTS patient_search_trgm;
  END IF;
END $$""",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0018_status_counts")]

    initial = False

    operations = [RunPerDialect({"postgres": POSTGRES})]
