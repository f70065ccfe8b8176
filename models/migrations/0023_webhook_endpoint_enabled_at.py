"""When staff last enabled a webhook endpoint again (the failure window that disables an
endpoint starts no earlier; see ``models/webhook.py``)."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0022_no_key_checks_on_link_practice_and_creator")]

    initial = False

    operations = [
        ops.AddField(
            model_name="WebhookEndpoint",
            name="enabled_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
