from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class LinkPurpose(StrEnum):
    INVITATION = "invitation"  # sent by staff: set up or reset
    SELF_SERVICE = "self_service"  # requested from the login screen


class DeliveryStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    FAILED = "FAILED"


class RevokeReason(StrEnum):
    SUPERSEDED = "superseded"
    EMAIL_CHANGED = "email_changed"
    PORTAL_DISABLED = "portal_disabled"
    REDEEMED_OTHER = "redeemed_other"
    UNDELIVERABLE = "undeliverable"
    PASSWORD_SET = "password_set"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    PHONE_CHANGED = "phone_changed"  # the mobile number or the consent to texts changed


class LinkToken(Model):
    """An invitation/reset link, stored as the SHA-256 digest of its token.

    Single use is enforced by a conditional UPDATE on ``used_at`` (onboarding.links)."""

    # Foreign key columns, declared for type checkers.
    practice_id: int
    patient_id: int
    created_by_id: int | None
    id = fields.IntField(primary_key=True)
    # No database constraint on the practice and the creator (migration 0022): a bulk
    # invitation of 10,000 patients paid a per-row key check for each, 80-100 ms of its
    # statement (docs/onboarding-speed.md), and neither guarded anything the patient's
    # key does not: the link goes with its patient (ON DELETE CASCADE), the patient with
    # its practice, and ``practice_id`` is always the patient's, written under its lock.
    # ``created_by_id`` only says who asked; staff rows are deactivated, not deleted.
    practice = fields.ForeignKeyField("models.Practice", related_name=False, db_constraint=False)
    patient = fields.ForeignKeyField("models.Patient", related_name="links")
    digest = fields.CharField(max_length=64, unique=True)
    purpose = fields.CharEnumField(LinkPurpose, max_length=16)
    sent_to = fields.CharField(max_length=254)
    # "email" or "sms" (then ``sent_to`` is an E.164 number).
    channel = fields.CharField(max_length=8, default="email", db_default="email")
    created_by = fields.ForeignKeyField(
        "models.StaffUser",
        related_name=False,
        null=True,
        on_delete=fields.SET_NULL,
        db_constraint=False,
    )
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    revoke_reason = fields.CharEnumField(RevokeReason, max_length=20, null=True)
    delivery_status = fields.CharEnumField(
        DeliveryStatus, max_length=8, default=DeliveryStatus.QUEUED
    )
    delivery_detail = fields.CharField(max_length=500, null=True)
    # SPEC 7.4: a staff link gets one reminder carrying a fresh link; ``reminded_at`` on
    # the old link claims the reminder atomically, ``is_reminder`` marks the fresh one.
    reminded_at = fields.DatetimeField(null=True)
    is_reminder = fields.BooleanField(default=False, db_default=False)
    # Wrong dates of birth typed at redemption (SPEC 7.1): five revoke the link.
    dob_failures = fields.IntField(default=0)

    class Meta:
        table = "link_token"
        indexes = (("patient_id", "used_at", "revoked_at"),)
