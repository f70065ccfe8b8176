from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class ActorType(StrEnum):
    STAFF = "STAFF"
    PATIENT = "PATIENT"
    ANONYMOUS = "ANONYMOUS"
    SYSTEM = "SYSTEM"


class AuditEvent(Model):
    """Who did what to whom, when and from where (HIPAA 164.312(b), SECURITY LOG-2).
    ``detail`` holds non-secret facts only: never a password, token, link or address."""

    # Foreign key columns, declared for type checkers.
    practice_id: int | None
    patient_id: int | None
    id = fields.IntField(primary_key=True)
    # No database constraint: a record of what happened must keep naming the practice
    # and patient whatever becomes of their rows (a constraint would null or delete the
    # id), and a bulk action writing 10,000 events pays no per-row key check.
    practice = fields.ForeignKeyField(
        "models.Practice", related_name=False, null=True, db_constraint=False
    )
    patient = fields.ForeignKeyField(
        "models.Patient", related_name=False, null=True, db_constraint=False
    )
    actor_type = fields.CharEnumField(ActorType, max_length=10)
    actor_id = fields.IntField(null=True)
    action = fields.CharField(max_length=48)
    outcome = fields.CharField(max_length=16, default="success")
    occurred_at = fields.DatetimeField()
    client_addr = fields.CharField(max_length=64, null=True)
    request_id = fields.CharField(max_length=40, null=True)
    detail = fields.JSONField(null=True)

    class Meta:
        table = "audit_event"
        indexes = (("practice_id", "id"), ("practice_id", "patient_id", "id"))
