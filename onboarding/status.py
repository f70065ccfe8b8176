"""PortalStatus, derived from the chart, the account and the newest link; never stored
(it changes with time: a link or a staff-set password expires).

The rule lives in one place, as SQL, because the Onboarding Tool filters and counts by
status in the database; every read of a patient goes through the same expression.
Order matters: each branch names the next step staff should take (SPEC section 3).
"""

from __future__ import annotations

from enum import Enum


class PortalStatus(Enum):
    DISABLED = "DISABLED"
    NO_EMAIL = "NO_EMAIL"
    NOT_INVITED = "NOT_INVITED"
    INVITED = "INVITED"
    INVITATION_EXPIRED = "INVITATION_EXPIRED"
    CREDENTIALS_ISSUED = "CREDENTIALS_ISSUED"
    ACTIVE = "ACTIVE"


def status_sql(now_param: str, temp_cutoff_param: str) -> str:
    """The status rule as a SQL CASE over ``p`` (patient) alone. The parameters are
    placeholders for ``now`` and ``now - temporary password lifetime``.

    It reads the copies of the account's and the newest link's state that triggers keep
    on ``patient`` (migration 0006): counting a practice's 22,000 patients by status
    then reads ``patient`` only, instead of joining every account and link.
    ``account_active`` means the owner chose the password or has logged in;
    ``staff_password_set_at`` is set while the password is a staff-set one;
    ``link_open_until`` is the newest link's expiry while it is unused and unrevoked."""
    # A staff-set password unused past its lifetime falls back to the steps below (SPEC 7.6).
    # Only the newest link matters: issuing a link revokes the older ones.
    return f"""CASE
 WHEN NOT p.portal_enabled THEN 'DISABLED'
 WHEN p.account_active THEN 'ACTIVE'
 WHEN p.staff_password_set_at > {temp_cutoff_param} THEN 'CREDENTIALS_ISSUED'
 WHEN p.email_key IS NULL AND NOT p.sms_consent THEN 'NO_EMAIL'
 WHEN p.link_open_until > {now_param} THEN 'INVITED'
 WHEN p.last_link_id IS NOT NULL THEN 'INVITATION_EXPIRED'
 ELSE 'NOT_INVITED' END"""


# The status class (``patient.status_class``, migration 0018): the rule above without
# its two time-dependent branches, so it depends on stored columns only and can be
# counted incrementally. A patient's status is its class unless it is CREDENTIALS_ISSUED
# or INVITED right now; a patient of any other status has that status as its class.
TIME_DEPENDENT = frozenset({PortalStatus.CREDENTIALS_ISSUED, PortalStatus.INVITED})
STATUS_CLASSES = tuple(s for s in PortalStatus if s not in TIME_DEPENDENT)
# Widths of the buckets of patient_status_expiry (migration 0018 uses the same numbers):
# staff-set passwords by the hour they were set, open links by the ten minutes they end in.
STAFF_BUCKET_SECONDS = 3600
LINK_BUCKET_SECONDS = 600
