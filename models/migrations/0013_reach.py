"""Reach every patient (SPEC 9): the practice profile and its administrators, the
patient's language, mobile phone and text consent, and the channel of links and outbox
rows. Existing staff stay non-administrators; existing patients read English; existing
practices write times in UTC until an administrator sets their time zone.

The status-inputs index (migration 0007) gains ``sms_consent``: ``NO_EMAIL`` now means
"no email and no consented mobile" and counting by status stays an index-only scan.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from models.link import RevokeReason
from models.migration_ops import RunPerDialect


class AlterFieldStateOnly(ops.AlterField):
    """A new RevokeReason value (``phone_changed``) changes the field's description only;
    the column stays varchar(20). Tortoise would rebuild link_token on SQLite for it,
    which breaks the triggers of migration 0006, so the database is left alone."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        return None


STATUS_INPUTS = {
    "postgres": [
        "DROP INDEX IF EXISTS patient_status_inputs",
        "CREATE INDEX patient_status_inputs ON patient (practice_id)"
        " INCLUDE (portal_enabled, account_active, staff_password_set_at, email_key,"
        " sms_consent, link_open_until, last_link_id)",
    ],
    "sqlite": [
        "DROP INDEX IF EXISTS patient_status_inputs",
        "CREATE INDEX patient_status_inputs ON patient (practice_id, portal_enabled,"
        " account_active, staff_password_set_at, email_key, sms_consent, link_open_until,"
        " last_link_id)",
    ],
}


class Migration(migrations.Migration):
    dependencies = [("models", "0012_events_and_webhooks")]

    initial = False

    operations = [
        ops.AddField(
            model_name="LinkToken",
            name="channel",
            field=fields.CharField(default="email", db_default="email", max_length=8),
        ),
        ops.AddField(
            model_name="OutboxMessage",
            name="channel",
            field=fields.CharField(default="email", db_default="email", max_length=8),
        ),
        ops.AddField(
            model_name="Patient",
            name="mobile_phone",
            field=fields.CharField(null=True, max_length=16),
        ),
        ops.AddField(
            model_name="Patient",
            name="preferred_language",
            field=fields.CharField(default="en", db_default="en", max_length=35),
        ),
        ops.AddField(
            model_name="Patient",
            name="sms_consent",
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name="Patient",
            name="sms_consent_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Practice",
            name="phone",
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name="Practice",
            name="reply_to",
            field=fields.CharField(null=True, max_length=254),
        ),
        ops.AddField(
            model_name="Practice",
            name="sender_name",
            field=fields.CharField(null=True, max_length=120),
        ),
        ops.AddField(
            model_name="Practice",
            name="time_zone",
            field=fields.CharField(default="UTC", db_default="UTC", max_length=64),
        ),
        ops.AddField(
            model_name="Practice",
            name="website",
            field=fields.CharField(null=True, max_length=254),
        ),
        ops.AddField(
            model_name="StaffUser",
            name="is_admin",
            field=fields.BooleanField(default=False, db_default=False),
        ),
        AlterFieldStateOnly(
            model_name="LinkToken",
            name="revoke_reason",
            field=fields.CharEnumField(
                null=True,
                description="SUPERSEDED: superseded\nEMAIL_CHANGED: email_changed\n"
                "PORTAL_DISABLED: portal_disabled\nREDEEMED_OTHER: redeemed_other\n"
                "UNDELIVERABLE: undeliverable\nPASSWORD_SET: password_set\n"
                "TOO_MANY_ATTEMPTS: too_many_attempts\nPHONE_CHANGED: phone_changed",
                enum_type=RevokeReason,
                max_length=20,
            ),
        ),
        RunPerDialect(STATUS_INPUTS),
    ]
