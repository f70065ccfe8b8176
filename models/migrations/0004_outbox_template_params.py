"""The outbox keeps template variables (rendered at send time) instead of rendered bodies.

Messages still pending when this runs lose their bodies: run ``portal mail-worker`` until
the outbox is empty before upgrading a deployment that has mail queued."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_link_reminders')]

    initial = False

    operations = [
        ops.AddField(
            model_name='OutboxMessage',
            name='params',
            field=fields.JSONField(default=dict, db_default='{}', encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.RemoveField(model_name='OutboxMessage', name='body_html'),
        ops.RemoveField(model_name='OutboxMessage', name='body_text'),
        ops.RemoveField(model_name='OutboxMessage', name='subject'),
    ]
