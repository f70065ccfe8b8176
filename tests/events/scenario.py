"""The scripted onboarding the events and webhook tests share: enable, send, delivered,
redeemed, locked, reset (a staff-sent reset link redeemed with a new password)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, Mailbox, token_from
from tests.helpers import ENABLE, LOGIN, REDEEM, STRONG_PASSWORD, create_patient, invite

EMAIL = "avery.quinn1@example.com"
RESET_PASSWORD = "copper-lantern-meadow-17"

EXPECTED = [
    ("portal.enabled", "NOT_INVITED"),
    ("invitation.sent", "INVITED"),
    ("invitation.delivered", "INVITED"),
    ("account.activated", "ACTIVE"),
    ("account.locked", "ACTIVE"),
    ("invitation.sent", "ACTIVE"),
    ("invitation.delivered", "ACTIVE"),
    ("account.unlocked", "ACTIVE"),
    ("account.password_changed", "ACTIVE"),
]


async def scripted_onboarding(api: Api, token: str, mailbox: Mailbox) -> str:
    """Runs the whole story through the real API and SMTP; returns the patient id."""
    pid = await create_patient(api, token)
    result = await api.gql(ENABLE, {"ids": [pid]}, token)
    assert result["data"]["enablePortal"]["results"][0]["userErrors"] == []
    assert (await invite(api, token, pid))["userErrors"] == []
    await api.deliver()
    link = token_from(mailbox.to(EMAIL)[-1])
    redeemed = await api.gql(
        REDEEM, {"input": {"token": link, "username": "avery.q", "password": STRONG_PASSWORD}}
    )
    assert redeemed["data"]["redeemToken"]["userErrors"] == [], redeemed
    for _ in range(api.settings.lockout_threshold):
        await api.gql(LOGIN, {"u": "avery.q", "p": "not-the-password-at-all"})
    assert (await invite(api, token, pid))["userErrors"] == []
    await api.deliver()
    reset = token_from(mailbox.to(EMAIL)[-1])
    variables: dict[str, Any] = {"input": {"token": reset, "password": RESET_PASSWORD}}
    result = await api.gql(REDEEM, variables)
    assert result["data"]["redeemToken"]["userErrors"] == [], result
    return pid
