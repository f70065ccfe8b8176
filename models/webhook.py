"""Events for the EMR (SPEC 8.7) and their webhook delivery (SPEC 8.8).

``portal_event`` is a transactional outbox: a row is written by the unit of work in the
transaction that changes the patient, so an event exists exactly when its change does.
Webhook deliveries are written in the same statement, one per event and subscribed
endpoint; the delivery loop only reads and settles them."""

from datetime import UTC, datetime
from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class PortalEvent(Model):
    """A change of a patient's portal state. Never a token, password, link or address:
    the practice, the patient, the event type, the status after the change and when."""

    practice_id: int
    patient_id: int
    id = fields.BigIntField(primary_key=True)
    # No database constraints, like audit_event: the record outlives its rows, and a
    # 10,000-patient invitation pays no per-row key checks.
    practice = fields.ForeignKeyField("models.Practice", related_name=False, db_constraint=False)
    patient = fields.ForeignKeyField("models.Patient", related_name=False, db_constraint=False)
    # Per patient 1, 2, 3...: written under the patient's row lock, so it is the order
    # in which the changes committed. Consumers use it to order and to spot a gap.
    seq = fields.IntField()
    type = fields.CharField(max_length=40)
    portal_status = fields.CharField(max_length=24)
    occurred_at = fields.DatetimeField()

    class Meta:
        table = "portal_event"
        unique_together = (("patient_id", "seq"),)
        indexes = (("practice_id", "id"),)


class WebhookEndpoint(Model):
    """A practice's receiver. The signing secret is kept readable: HMAC signing needs
    it (Standard Webhooks); it is shown to staff once, at creation or rotation."""

    practice_id: int
    id = fields.IntField(primary_key=True)
    practice = fields.ForeignKeyField("models.Practice", related_name=False)
    url = fields.CharField(max_length=2000)
    # Event types this endpoint receives; empty means every type.
    event_types: list = fields.JSONField(default=list)
    secret = fields.CharField(max_length=100)
    # After a rotation the old secret still signs (a second signature) until this time,
    # so the receiver can switch without dropping a message.
    previous_secret = fields.CharField(max_length=100, null=True)
    previous_secret_until = fields.DatetimeField(null=True)
    enabled = fields.BooleanField(default=True)
    disabled_reason = fields.CharField(max_length=500, null=True)
    disabled_at = fields.DatetimeField(null=True)
    # When staff last enabled it again: the failure window that disables an endpoint
    # starts no earlier, so events kept while it was off do not disable it at once.
    enabled_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    created_by_id = fields.IntField(null=True)

    class Meta:
        table = "webhook_endpoint"


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


# The next attempt of a delivery whose endpoint is disabled: kept, never due (the worker
# parks them so its claim does not walk them on every poll; enabling sets them due).
PARKED = datetime(9999, 1, 1, tzinfo=UTC)


class WebhookDelivery(Model):
    """One event on its way to one endpoint. ``lease_until`` marks a row a worker is
    sending; a crashed worker's lease runs out and the row is claimed again."""

    endpoint_id: int
    event_id: int
    practice_id: int
    patient_id: int
    id = fields.BigIntField(primary_key=True)
    endpoint = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name=False, db_constraint=False
    )
    event = fields.ForeignKeyField("models.PortalEvent", related_name=False, db_constraint=False)
    practice = fields.ForeignKeyField("models.Practice", related_name=False, db_constraint=False)
    patient = fields.ForeignKeyField("models.Patient", related_name=False, db_constraint=False)
    status = fields.CharEnumField(
        WebhookDeliveryStatus, max_length=10, default=WebhookDeliveryStatus.PENDING
    )
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    lease_until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        indexes = (
            ("status", "next_attempt_at"),
            ("endpoint_id", "patient_id", "status", "id"),
            ("endpoint_id", "id"),
        )


class WebhookAttempt(Model):
    """One HTTP attempt, shown to staff by ``webhookDeliveries``."""

    delivery_id: int
    endpoint_id: int
    id = fields.BigIntField(primary_key=True)
    delivery = fields.ForeignKeyField(
        "models.WebhookDelivery", related_name=False, db_constraint=False
    )
    endpoint = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name=False, db_constraint=False
    )
    attempted_at = fields.DatetimeField()
    status_code = fields.IntField(null=True)
    latency_ms = fields.IntField()
    # The first bytes of the reply (or why there was none), for staff debugging.
    response_excerpt = fields.CharField(max_length=300, null=True)
    error = fields.CharField(max_length=300, null=True)

    class Meta:
        table = "webhook_attempt"
        indexes = (("delivery_id", "id"), ("endpoint_id", "id"))
