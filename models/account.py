from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class PasswordOrigin(StrEnum):
    """Who chose the current password: decides CREDENTIALS_ISSUED versus ACTIVE."""

    STAFF = "staff"
    PATIENT = "patient"


class PortalAccount(Model):
    """At most one per patient. ``username_key`` (case-folded) carries the
    deployment-wide unique index, so uniqueness holds under races and on every database."""

    # Foreign key columns, declared for type checkers.
    patient_id: int
    id = fields.IntField(primary_key=True)
    patient = fields.OneToOneField("models.Patient", related_name="account")
    username = fields.CharField(max_length=64)
    username_key = fields.CharField(max_length=64, unique=True)
    password_hash = fields.CharField(max_length=255, null=True)
    password_origin = fields.CharEnumField(PasswordOrigin, max_length=8, null=True)
    password_set_at = fields.DatetimeField(null=True)
    must_change_password = fields.BooleanField(default=False)
    failed_logins = fields.IntField(default=0)
    locked_until = fields.DatetimeField(null=True)
    last_login_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "portal_account"


class PatientSession(Model):
    """A logged-in patient. ``full_access`` is false while a staff-set password must be
    changed: such a session may only call ``changePassword`` (SECURITY NOTIF-2)."""

    # Foreign key columns, declared for type checkers.
    account_id: int
    id = fields.IntField(primary_key=True)
    account = fields.ForeignKeyField("models.PortalAccount", related_name="sessions")
    token_digest = fields.CharField(max_length=64, unique=True)
    full_access = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "patient_session"
