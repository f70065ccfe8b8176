"""The onboarding funnel (SPEC 7.5)."""

from datetime import timedelta

import time_machine

from core.clock import utcnow
from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import REDEEM, STRONG_PASSWORD, enabled_patient, invite

STATS = """
query($start: Date!, $end: Date!) {
  onboardingStats(start: $start, end: $end) {
    statusCounts { status count }
    invitationsSent patientsInvited patientsActivated activationRate medianHoursToActivation
  }
}"""


async def test_funnel_counts_invitations_and_activations(
    api: Api, staff: Staff, other_staff: Staff, mailbox: Mailbox
) -> None:
    # given four invited patients, two of whom activate 2 h and 4 h later
    now = utcnow().replace(microsecond=0)
    ids = [await enabled_patient(api, staff.token, n=n) for n in range(1, 5)]
    with time_machine.travel(now, tick=False):
        for pid in ids:
            await invite(api, staff.token, pid)
        await api.deliver()
    # another practice's activity must not count
    foreign = await enabled_patient(api, other_staff.token, n=9)
    await invite(api, other_staff.token, foreign)
    tokens = {m["To"]: token_from(m) for m in mailbox.messages}
    for n, hours in ((1, 2), (2, 4)):
        with time_machine.travel(now + timedelta(hours=hours), tick=False):
            result = await api.gql(REDEEM, {"input": {"token": tokens[f"avery.quinn{n}@example.com"],
                                                       "username": f"avery{n}", "password": STRONG_PASSWORD}})
            assert result["data"]["redeemToken"]["userErrors"] == []

    # when staff ask for today's funnel
    day = now.date().isoformat()
    result = await api.gql(STATS, {"start": day, "end": day}, staff.token)
    stats = result["data"]["onboardingStats"]

    # then
    assert stats["invitationsSent"] == 4
    assert stats["patientsInvited"] == 4
    assert stats["patientsActivated"] == 2
    assert stats["activationRate"] == 0.5
    assert stats["medianHoursToActivation"] == 3.0
    counts = {c["status"]: c["count"] for c in stats["statusCounts"]}
    assert counts["ACTIVE"] == 2 and counts["INVITED"] == 2


async def test_funnel_range_is_validated(api: Api, staff: Staff) -> None:
    result = await api.gql(STATS, {"start": "2026-02-01", "end": "2026-01-01"}, staff.token)
    assert result["data"] is None
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
