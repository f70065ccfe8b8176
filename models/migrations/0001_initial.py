from orjson import loads
from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.account import PasswordOrigin
from models.audit import ActorType
from models.link import DeliveryStatus, LinkPurpose, RevokeReason
from models.outbox import OutboxStatus
from models.patient import ChartStatus


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Practice",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("name", fields.CharField(max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "practice",
                "app": "models",
                "pk_attr": "id",
                "table_description": "The tenant: staff of one practice never reach the rows of another practice.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="StaffUser",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "practice",
                    fields.ForeignKeyField(
                        "models.Practice",
                        source_field="practice_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="staff",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=200)),
                ("token_digest", fields.CharField(unique=True, max_length=64)),
                ("active", fields.BooleanField(default=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "staff_user",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A named staff member (HIPAA unique user identification).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Patient",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "practice",
                    fields.ForeignKeyField(
                        "models.Practice",
                        source_field="practice_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="patients",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("chart_number", fields.CharField(max_length=64)),
                ("first_name", fields.CharField(max_length=100)),
                ("last_name", fields.CharField(max_length=100)),
                ("first_name_key", fields.CharField(max_length=100)),
                ("last_name_key", fields.CharField(max_length=100)),
                ("date_of_birth", fields.DateField()),
                ("email", fields.CharField(null=True, max_length=254)),
                ("email_key", fields.CharField(null=True, max_length=254)),
                (
                    "email_changed_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("zip_code", fields.CharField(null=True, max_length=16)),
                (
                    "chart_status",
                    fields.CharEnumField(
                        default=ChartStatus.ACTIVE,
                        description="ACTIVE: ACTIVE\nPROSPECTIVE: PROSPECTIVE\nINACTIVE: INACTIVE\nDECEASED: DECEASED",
                        enum_type=ChartStatus,
                        max_length=12,
                    ),
                ),
                ("portal_enabled", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "patient",
                "app": "models",
                "unique_together": (("practice", "chart_number"),),
                "indexes": [
                    Index(fields=["practice_id", "last_name_key", "first_name_key", "id"]),
                    Index(fields=["practice_id", "email_key"]),
                ],
                "pk_attr": "id",
                "table_description": "The chart as the EMR sends it, plus the portal switch.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PortalAccount",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "patient",
                    fields.OneToOneField(
                        "models.Patient",
                        source_field="patient_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="account",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("username", fields.CharField(max_length=64)),
                ("username_key", fields.CharField(unique=True, max_length=64)),
                ("password_hash", fields.CharField(null=True, max_length=255)),
                (
                    "password_origin",
                    fields.CharEnumField(
                        null=True,
                        description="STAFF: staff\nPATIENT: patient",
                        enum_type=PasswordOrigin,
                        max_length=8,
                    ),
                ),
                (
                    "password_set_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("must_change_password", fields.BooleanField(default=False)),
                ("failed_logins", fields.IntField(default=0)),
                (
                    "locked_until",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                (
                    "last_login_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "portal_account",
                "app": "models",
                "pk_attr": "id",
                "table_description": "At most one per patient. ``username_key`` (case-folded) carries the",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PatientSession",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "account",
                    fields.ForeignKeyField(
                        "models.PortalAccount",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="sessions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("token_digest", fields.CharField(unique=True, max_length=64)),
                ("full_access", fields.BooleanField(default=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "patient_session",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A logged-in patient. ``full_access`` is false while a staff-set password must be",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LinkToken",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "practice",
                    fields.ForeignKeyField(
                        "models.Practice",
                        source_field="practice_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "patient",
                    fields.ForeignKeyField(
                        "models.Patient",
                        source_field="patient_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="links",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("digest", fields.CharField(unique=True, max_length=64)),
                (
                    "purpose",
                    fields.CharEnumField(
                        description="INVITATION: invitation\nSELF_SERVICE: self_service",
                        enum_type=LinkPurpose,
                        max_length=16,
                    ),
                ),
                ("sent_to", fields.CharField(max_length=254)),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.StaffUser",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("used_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "revoke_reason",
                    fields.CharEnumField(
                        null=True,
                        description="SUPERSEDED: superseded\nEMAIL_CHANGED: email_changed\nPORTAL_DISABLED: portal_disabled\nREDEEMED_OTHER: redeemed_other\nUNDELIVERABLE: undeliverable\nPASSWORD_SET: password_set\nTOO_MANY_ATTEMPTS: too_many_attempts",
                        enum_type=RevokeReason,
                        max_length=20,
                    ),
                ),
                (
                    "delivery_status",
                    fields.CharEnumField(
                        default=DeliveryStatus.QUEUED,
                        description="QUEUED: QUEUED\nSENT: SENT\nFAILED: FAILED",
                        enum_type=DeliveryStatus,
                        max_length=8,
                    ),
                ),
                ("delivery_detail", fields.CharField(null=True, max_length=500)),
                ("dob_failures", fields.IntField(default=0)),
            ],
            options={
                "table": "link_token",
                "app": "models",
                "indexes": [Index(fields=["patient_id", "used_at", "revoked_at"])],
                "pk_attr": "id",
                "table_description": "An invitation/reset link, stored as the SHA-256 digest of its token.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="OutboxMessage",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "practice",
                    fields.ForeignKeyField(
                        "models.Practice",
                        source_field="practice_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "patient",
                    fields.ForeignKeyField(
                        "models.Patient",
                        source_field="patient_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "link",
                    fields.ForeignKeyField(
                        "models.LinkToken",
                        source_field="link_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("kind", fields.CharField(max_length=32)),
                ("to_addr", fields.CharField(max_length=254)),
                ("subject", fields.CharField(max_length=200)),
                ("body_text", fields.TextField(unique=False)),
                ("body_html", fields.TextField(unique=False)),
                (
                    "status",
                    fields.CharEnumField(
                        default=OutboxStatus.PENDING,
                        description="PENDING: pending\nSENT: sent\nFAILED: failed",
                        enum_type=OutboxStatus,
                        max_length=8,
                    ),
                ),
                ("attempts", fields.IntField(default=0)),
                ("next_attempt_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("last_error", fields.CharField(null=True, max_length=500)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("sent_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "outbox_message",
                "app": "models",
                "indexes": [Index(fields=["status", "next_attempt_at"])],
                "pk_attr": "id",
                "table_description": "A message written in the same transaction as the change that caused it and sent",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AuditEvent",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "practice",
                    fields.ForeignKeyField(
                        "models.Practice",
                        source_field="practice_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "patient",
                    fields.ForeignKeyField(
                        "models.Patient",
                        source_field="patient_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "actor_type",
                    fields.CharEnumField(
                        description="STAFF: STAFF\nPATIENT: PATIENT\nANONYMOUS: ANONYMOUS\nSYSTEM: SYSTEM",
                        enum_type=ActorType,
                        max_length=10,
                    ),
                ),
                ("actor_id", fields.IntField(null=True)),
                ("action", fields.CharField(max_length=48)),
                ("outcome", fields.CharField(default="success", max_length=16)),
                ("occurred_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("client_addr", fields.CharField(null=True, max_length=64)),
                ("request_id", fields.CharField(null=True, max_length=40)),
                ("detail", fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={
                "table": "audit_event",
                "app": "models",
                "indexes": [
                    Index(fields=["practice_id", "id"]),
                    Index(fields=["practice_id", "patient_id", "id"]),
                ],
                "pk_attr": "id",
                "table_description": "Who did what to whom, when and from where (HIPAA 164.312(b), SECURITY LOG-2).",
            },
            bases=["Model"],
        ),
        # Patient and LinkToken reference each other: the newest-link pointer is added
        # once both tables exist (Tortoise drops foreign keys to tables not yet created).
        ops.AddField(
            model_name="Patient",
            name="last_link",
            field=fields.ForeignKeyField(
                "models.LinkToken",
                source_field="last_link_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name=False,
                on_delete=OnDelete.SET_NULL,
            ),
        ),
    ]
