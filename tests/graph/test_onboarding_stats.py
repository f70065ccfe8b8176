"""The onboarding funnel (SPEC 7.5)."""

from datetime import UTC, date, datetime, timedelta

import time_machine

from core.clock import utcnow
from models import LinkPurpose, LinkToken
from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import REDEEM, STRONG_PASSWORD, enabled_patient, invite, pk

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


# Edge cases of the README's definitions ("Onboarding statistics"). Each scenario writes
# the link facts it needs directly (times, purposes), then asks the real API.

DAY = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


async def links_for(api: Api, staff: Staff, n: int, count: int) -> tuple[str, list[LinkToken]]:
    pid = await enabled_patient(api, staff.token, n=n)
    for _ in range(count):
        assert (await invite(api, staff.token, pid))["userErrors"] == []
    return pid, list(await LinkToken.filter(patient_id=pk(pid)).order_by("id"))


async def set_link(link: LinkToken, **values: object) -> None:
    await LinkToken.filter(id=link.id).update(**values)


async def stats_for(api: Api, staff: Staff, start: date, end: date) -> dict:
    result = await api.gql(STATS, {"start": start.isoformat(), "end": end.isoformat()}, staff.token)
    assert "errors" not in result, result
    return result["data"]["onboardingStats"]


async def test_a_redemption_before_the_first_staff_invitation_is_no_activation(
    api: Api, staff: Staff
) -> None:
    # a self-service link redeemed at 09:00, then a staff invitation at 11:00, unanswered
    _, (self_service, staff_link) = await links_for(api, staff, 1, 2)
    await set_link(self_service, purpose=LinkPurpose.SELF_SERVICE, created_at=DAY,
                   used_at=DAY + timedelta(minutes=5), revoked_at=None)
    await set_link(staff_link, created_at=DAY + timedelta(hours=2))
    stats = await stats_for(api, staff, DAY.date(), DAY.date())
    assert (stats["patientsInvited"], stats["patientsActivated"]) == (1, 0)
    assert stats["activationRate"] == 0.0
    assert stats["medianHoursToActivation"] is None


async def test_hours_to_activation_are_never_negative(api: Api, staff: Staff) -> None:
    # redeemed before the invitation (counted from nothing) and 30 min after it
    _, (early,) = await links_for(api, staff, 1, 1)
    await set_link(early, created_at=DAY, used_at=DAY - timedelta(hours=3))
    _, (later,) = await links_for(api, staff, 2, 1)
    await set_link(later, created_at=DAY, used_at=DAY + timedelta(minutes=30))
    stats = await stats_for(api, staff, DAY.date(), DAY.date())
    assert (stats["patientsInvited"], stats["patientsActivated"]) == (2, 1)
    assert stats["medianHoursToActivation"] == 0.5


async def test_the_cohort_is_the_first_staff_invitation_in_the_range(
    api: Api, staff: Staff
) -> None:
    # first invited the day before the range, re-invited inside it
    _, (before, inside) = await links_for(api, staff, 1, 2)
    await set_link(before, created_at=DAY - timedelta(days=1))
    await set_link(inside, created_at=DAY)
    # first invited on the last day of the range (end is inclusive), activated a week later
    _, (last_day,) = await links_for(api, staff, 2, 1)
    end = DAY + timedelta(days=2)
    await set_link(last_day, created_at=end.replace(hour=23, minute=59),
                   used_at=end.replace(hour=23, minute=59) + timedelta(days=7))
    # an automatic reminder in the range is not a staff invitation
    _, (original, reminder) = await links_for(api, staff, 3, 2)
    await set_link(original, created_at=DAY - timedelta(days=5))
    await set_link(reminder, created_at=DAY, is_reminder=True)

    stats = await stats_for(api, staff, DAY.date(), end.date())
    assert stats["invitationsSent"] == 2  # `inside` and `last_day`
    assert stats["patientsInvited"] == 1  # only patient 2's first invitation is in range
    assert stats["patientsActivated"] == 1
    assert stats["activationRate"] == 1.0
    assert stats["medianHoursToActivation"] == 168.0


async def test_an_empty_range_has_no_rates(api: Api, staff: Staff) -> None:
    stats = await stats_for(api, staff, date(2020, 1, 1), date(2020, 1, 31))
    assert stats["invitationsSent"] == stats["patientsInvited"] == stats["patientsActivated"] == 0
    assert stats["activationRate"] is None and stats["medianHoursToActivation"] is None
