from tortoise import fields
from tortoise.models import Model


class IdempotencyKey(Model):
    """A bulk request already carried out, so a retried or double-clicked request with the
    same key replays its results instead of acting twice (SPEC 7.2)."""

    practice_id: int
    id = fields.IntField(primary_key=True)
    practice = fields.ForeignKeyField("models.Practice", related_name=False)
    key = fields.CharField(max_length=100)
    operation = fields.CharField(max_length=32)
    fingerprint = fields.CharField(max_length=64)
    result = fields.JSONField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "idempotency_key"
        unique_together = (("practice", "operation", "key"),)
