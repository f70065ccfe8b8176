"""Outbox claims carry the claim's own id (``claim``), so a dispatcher whose claim
COMMIT's reply was lost finds the rows that claim leased when it tries again, instead of
leaving them for the lease to end (docs/delivery.md). Existing rows have none."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0015_link_keys")]

    initial = False

    operations = [
        ops.AddField(
            model_name="OutboxMessage",
            name="claim",
            field=fields.CharField(null=True, max_length=32),
        ),
    ]
