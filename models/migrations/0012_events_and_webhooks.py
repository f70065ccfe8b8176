"""Events for the EMR (SPEC 8.7) and webhook endpoints, deliveries and attempts (SPEC 8.8)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from models.webhook import WebhookDeliveryStatus
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index
from models.migration_ops import RunPerDialect

# Tortoise creates a constraint even for db_constraint=False (see 0005): dropped here on
# PostgreSQL, where a 10,000-patient invitation would otherwise pay four key checks per
# delivery row and two per event.
NO_CONSTRAINTS = {
    "postgres": [
        f'ALTER TABLE "{table}" DROP CONSTRAINT IF EXISTS "{table}_{column}_id_fkey"'
        for table, columns in (
            ("portal_event", ("practice", "patient")),
            ("webhook_delivery", ("endpoint", "event", "practice", "patient")),
            ("webhook_attempt", ("delivery", "endpoint")),
        )
        for column in columns
    ]
}

class Migration(migrations.Migration):
    dependencies = [("models", "0011_chart_number_ignoring_case")]

    initial = False

    operations = [
        ops.CreateModel(
            name='PortalEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('practice', fields.ForeignKeyField('models.Practice', source_field='practice_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('seq', fields.IntField()),
                ('type', fields.CharField(max_length=40)),
                ('portal_status', fields.CharField(max_length=24)),
                ('occurred_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'portal_event', 'app': 'models', 'unique_together': (('patient_id', 'seq'),), 'indexes': [Index(fields=['practice_id', 'id'])], 'pk_attr': 'id', 'table_description': "A change of a patient's portal state. Never a token, password, link or address:"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookEndpoint',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('practice', fields.ForeignKeyField('models.Practice', source_field='practice_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('url', fields.CharField(max_length=2000)),
                ('event_types', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('secret', fields.CharField(max_length=100)),
                ('previous_secret', fields.CharField(null=True, max_length=100)),
                ('previous_secret_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('enabled', fields.BooleanField(default=True)),
                ('disabled_reason', fields.CharField(null=True, max_length=500)),
                ('disabled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('created_by_id', fields.IntField(null=True)),
            ],
            options={'table': 'webhook_endpoint', 'app': 'models', 'pk_attr': 'id', 'table_description': "A practice's receiver. The signing secret is kept readable: HMAC signing needs"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('endpoint', fields.ForeignKeyField('models.WebhookEndpoint', source_field='endpoint_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('event', fields.ForeignKeyField('models.PortalEvent', source_field='event_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('practice', fields.ForeignKeyField('models.Practice', source_field='practice_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=WebhookDeliveryStatus.PENDING, description='PENDING: pending\nDELIVERED: delivered\nFAILED: failed', enum_type=WebhookDeliveryStatus, max_length=10)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'webhook_delivery', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at']), Index(fields=['endpoint_id', 'patient_id', 'status', 'id']), Index(fields=['endpoint_id', 'id'])], 'pk_attr': 'id', 'table_description': 'One event on its way to one endpoint. ``lease_until`` marks a row a worker is'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookAttempt',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('delivery', fields.ForeignKeyField('models.WebhookDelivery', source_field='delivery_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('endpoint', fields.ForeignKeyField('models.WebhookEndpoint', source_field='endpoint_id', db_constraint=False, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('attempted_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status_code', fields.IntField(null=True)),
                ('latency_ms', fields.IntField()),
                ('response_excerpt', fields.CharField(null=True, max_length=300)),
                ('error', fields.CharField(null=True, max_length=300)),
            ],
            options={'table': 'webhook_attempt', 'app': 'models', 'indexes': [Index(fields=['delivery_id', 'id']), Index(fields=['endpoint_id', 'id'])], 'pk_attr': 'id', 'table_description': 'One HTTP attempt, shown to staff by ``webhookDeliveries``.'},
            bases=['Model'],
        ),
        RunPerDialect(NO_CONSTRAINTS),
    ]
