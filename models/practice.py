from tortoise import fields
from tortoise.models import Model


class Practice(Model):
    """The tenant: staff of one practice never reach the rows of another practice."""

    id = fields.IntField(primary_key=True)
    # The display name: messages name the clinic with it (SPEC 9.1).
    name = fields.CharField(max_length=200)
    # The clinic's profile, edited by practice administrators: every message gives the
    # phone to call, replies go to ``reply_to``, ``sender_name`` is the From display name
    # and times are written in ``time_zone`` (IANA).
    phone = fields.CharField(max_length=32, null=True)
    reply_to = fields.CharField(max_length=254, null=True)
    sender_name = fields.CharField(max_length=120, null=True)
    website = fields.CharField(max_length=254, null=True)
    time_zone = fields.CharField(max_length=64, default="UTC", db_default="UTC")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "practice"


class StaffUser(Model):
    """A named staff member (HIPAA unique user identification).

    The bearer token is stored as its SHA-256 digest only."""

    # Foreign key columns, declared for type checkers.
    practice_id: int
    id = fields.IntField(primary_key=True)
    practice = fields.ForeignKeyField("models.Practice", related_name="staff")
    name = fields.CharField(max_length=200)
    token_digest = fields.CharField(max_length=64, unique=True)
    active = fields.BooleanField(default=True)
    # Practice administrators edit the practice profile; other staff read it.
    is_admin = fields.BooleanField(default=False, db_default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    # The current token's issue time (expiry counts from it; NULL for tokens issued
    # before migration 0009, which count from created_at), its last use (written at
    # most once a minute) and its revocation.
    token_issued_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "staff_user"
