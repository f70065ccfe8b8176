from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class OutboxMessage(Model):
    """A message written in the same transaction as the change that caused it and sent
    by the dispatcher after commit. It keeps the template variables, rendered at send
    time. They can hold a one-time link, so they are scrubbed once the message is sent
    or has failed for good."""

    # Foreign key columns, declared for type checkers.
    practice_id: int
    patient_id: int | None
    link_id: int | None
    id = fields.IntField(primary_key=True)
    # No database constraints: a queue row is written in the transaction that read the
    # rows it names and lives minutes; three key checks per row were most of the cost
    # of queueing a 10,000-patient invitation.
    practice = fields.ForeignKeyField("models.Practice", related_name=False, db_constraint=False)
    patient = fields.ForeignKeyField(
        "models.Patient", related_name=False, null=True, db_constraint=False
    )
    link = fields.ForeignKeyField(
        "models.LinkToken", related_name=False, null=True, db_constraint=False
    )
    kind = fields.CharField(max_length=32)
    # "email" or "sms": which transport carries it (``to_addr`` is then an E.164 number).
    channel = fields.CharField(max_length=8, default="email", db_default="email")
    to_addr = fields.CharField(max_length=254)
    params: dict = fields.JSONField(default=dict, db_default="{}")
    status = fields.CharEnumField(OutboxStatus, max_length=8, default=OutboxStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.CharField(max_length=500, null=True)
    # The id of the dispatcher claim that last leased the row: a claim retried after its
    # COMMIT's reply was lost takes back what it leased (mail/dispatcher.py).
    claim = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_message"
        indexes = (("status", "next_attempt_at"),)
