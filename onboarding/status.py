"""PortalStatus, derived from the chart, the account and the newest link; never stored.

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
    """The status rule as a SQL CASE over ``p`` (patient), ``a`` (portal_account, left
    joined) and ``l`` (the patient's newest link_token, left joined). The parameters are
    placeholders for ``now`` and ``now - temporary password lifetime``."""
    # A staff-set password unused past its lifetime falls back to the steps below (SPEC 7.6).
    # Only the newest link matters: issuing a link revokes the older ones.
    return f"""CASE
 WHEN NOT p.portal_enabled THEN 'DISABLED'
 WHEN a.last_login_at IS NOT NULL OR a.password_origin = 'patient' THEN 'ACTIVE'
 WHEN a.password_origin = 'staff' AND a.password_set_at > {temp_cutoff_param}
      THEN 'CREDENTIALS_ISSUED'
 WHEN p.email IS NULL THEN 'NO_EMAIL'
 WHEN l.id IS NOT NULL AND l.used_at IS NULL AND l.revoked_at IS NULL
      AND l.expires_at > {now_param} THEN 'INVITED'
 WHEN l.id IS NOT NULL THEN 'INVITATION_EXPIRED'
 ELSE 'NOT_INVITED' END"""
