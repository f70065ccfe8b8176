"""Chart numbers unique within a practice ignoring case: "DUP-x" and "dup-x" are one
chart in every EMR we integrate with, so a second one is refused
(DUPLICATE_CHART_NUMBER through the IntegrityError the workflows already map).

An expression index on ``lower(chart_number)`` (both backends; SQLite folds ASCII only,
which chart numbers are). If a database already holds two charts that differ only by
case, creating the index fails and names them in the error: staff must merge or renumber
one of them first; the migration never changes chart numbers itself.
"""

from tortoise import migrations

from models.migration_ops import RunPerDialect

INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS patient_chart_number_ci"
    " ON patient (practice_id, lower(chart_number))"
)


class Migration(migrations.Migration):
    dependencies = [("models", "0009_staff_token_lifecycle")]

    initial = False

    operations = [RunPerDialect({"postgres": [INDEX], "sqlite": [INDEX]})]
