from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_idempotency_key')]

    initial = False

    operations = [
        ops.AddField(
            model_name='LinkToken',
            name='is_reminder',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='LinkToken',
            name='reminded_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
