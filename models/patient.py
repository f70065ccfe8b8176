from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class ChartStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PROSPECTIVE = "PROSPECTIVE"
    INACTIVE = "INACTIVE"
    DECEASED = "DECEASED"


INVITABLE_CHART_STATUSES = frozenset({ChartStatus.ACTIVE, ChartStatus.PROSPECTIVE})


class Patient(Model):
    """The chart as the EMR sends it, plus the portal switch.

    ``last_name_key``/``first_name_key``/``email_key`` are lower-cased copies kept by
    :func:`models.patient.normalise_keys` so the Onboarding Tool can sort, search and
    count shared addresses with plain indexes on SQLite and PostgreSQL alike.

    The table also has three database-only columns, deliberately not fields here:
    ``account_active``, ``staff_password_set_at`` and ``link_open_until``, copies of the
    account's and the newest link's state kept by triggers (migration 0006) and read by
    the status rule in ``onboarding/status.py``. Any transaction that changes a
    patient's account or links locks this row first (``onboarding.unit_of_work``).
    """

    # Foreign key columns, declared for type checkers.
    practice_id: int
    last_link_id: int | None
    id = fields.IntField(primary_key=True)
    practice = fields.ForeignKeyField("models.Practice", related_name="patients")
    chart_number = fields.CharField(max_length=64)
    first_name = fields.CharField(max_length=100)
    last_name = fields.CharField(max_length=100)
    first_name_key = fields.CharField(max_length=100)
    last_name_key = fields.CharField(max_length=100)
    date_of_birth = fields.DateField()
    email = fields.CharField(max_length=254, null=True)
    email_key = fields.CharField(max_length=254, null=True)
    email_changed_at = fields.DatetimeField(null=True)
    zip_code = fields.CharField(max_length=16, null=True)
    # BCP 47 tag as the EMR sent it (normalised); messages use the nearest shipped
    # catalog and fall back to English (SPEC 9.2).
    preferred_language = fields.CharField(max_length=35, default="en", db_default="en")
    # E.164. Consent is only ever true with a number on file (removing the number clears
    # it), so "reachable by text" is ``sms_consent`` alone in the status SQL.
    mobile_phone = fields.CharField(max_length=16, null=True)
    sms_consent = fields.BooleanField(default=False, db_default=False)
    sms_consent_at = fields.DatetimeField(null=True)
    chart_status = fields.CharEnumField(ChartStatus, max_length=12, default=ChartStatus.ACTIVE)
    portal_enabled = fields.BooleanField(default=False)
    # The newest link issued for this patient: a newer link revokes older ones, so this
    # one alone decides INVITED / INVITATION_EXPIRED and feeds `lastInvitation`.
    last_link = fields.ForeignKeyField(
        "models.LinkToken", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "patient"
        unique_together = (("practice", "chart_number"),)
        indexes = (
            ("practice_id", "last_name_key", "first_name_key", "id"),
            ("practice_id", "email_key"),
        )

    def normalise_keys(self) -> None:
        self.first_name_key = self.first_name.casefold()
        self.last_name_key = self.last_name.casefold()
        self.email_key = self.email.casefold() if self.email else None
