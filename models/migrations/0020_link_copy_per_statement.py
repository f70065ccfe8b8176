"""The newest link's state copied onto ``patient`` once per statement, not once per link
(issue 15 item 5: a bulk invitation revokes the 10,000 links it supersedes in one
UPDATE).

Migration 0006's ``link_token_copy`` ran a plpgsql function per updated link, and each
call ran ``UPDATE patient ... WHERE last_link_id = NEW.id``, which matches nothing for
a superseded link but is still a statement: it fires the status-count statement triggers
of migration 0018 on ``patient`` (with their transition tables) once per revoked link.
Revoking 10,000 superseded links cost 0.76 s of the trigger alone
(``auto_explain`` of ``bench.bulk``'s reference, docs/onboarding-speed.md). Here one
statement trigger joins the changed links (old and new transition tables) to the
patients that point at them and updates those only: one ``UPDATE patient`` per
statement, the count triggers once.

Same rule as migration 0006 (``OPEN_UNTIL``, ``LINK_CHANGED``), same rows: only the
link a patient points at matters. The patients it writes are locked by the workflow
before it changes their links (``onboarding.unit_of_work``), as with the row trigger.
SQLite has no statement triggers; its row trigger is in process and stays.
"""

# ruff: noqa: S608 (SQL assembled from constants in this file only)
import importlib

from tortoise import migrations

from models.migration_ops import RunPerDialect

_0006 = importlib.import_module("models.migrations.0006_patient_status_inputs")
OPEN_UNTIL = _0006.OPEN_UNTIL.format(l="n")
CHANGED = _0006.LINK_CHANGED.replace("OLD.", "o.").replace("NEW.", "n.")

POSTGRES = [
    "DROP TRIGGER link_token_copy ON link_token",
    "DROP FUNCTION patient_copy_link()",
    f"""CREATE FUNCTION patient_copy_links() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- A statement trigger with transition tables takes no column list and no WHEN, so it
  -- fires for every UPDATE of link_token (delivery status, failed birth-date checks):
  -- those end here, before an UPDATE of patient that would fire its count triggers.
  IF NOT EXISTS (SELECT 1 FROM new_links n JOIN old_links o ON o.id = n.id
                 WHERE {CHANGED}) THEN
    RETURN NULL;
  END IF;
  UPDATE patient p SET link_open_until = {OPEN_UNTIL}
  FROM new_links n JOIN old_links o ON o.id = n.id
  WHERE p.id = n.patient_id AND p.last_link_id = n.id AND ({CHANGED});
  RETURN NULL;
END $$""",
    "CREATE TRIGGER link_token_copy AFTER UPDATE ON link_token"
    " REFERENCING OLD TABLE AS old_links NEW TABLE AS new_links"
    " FOR EACH STATEMENT EXECUTE FUNCTION patient_copy_links()",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0019_search_per_practice")]

    initial = False

    operations = [RunPerDialect({"postgres": POSTGRES})]
