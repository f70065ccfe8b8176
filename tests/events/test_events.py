"""Events (SPEC 8.7): written with the change, in the patient's order, with the status
after the change, and never a secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from graph.ids import patient_pk
from models import PortalEvent
from tests.conftest import Api, Mailbox, Staff
from tests.events.scenario import EXPECTED, scripted_onboarding
from tests.helpers import SEND, create_patient, enabled_patient


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_login": "1000/minute", "redeem_dob": "never"}


async def test_scripted_onboarding_writes_each_event_in_order_with_the_new_status(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a patient taken through the whole onboarding story
    pid = await scripted_onboarding(api, staff.token, mailbox)
    # then every change is one event, in order, with the status after it
    rows = await PortalEvent.filter(patient_id=patient_pk(pid)).order_by("seq")
    assert [(r.type, r.portal_status) for r in rows] == EXPECTED
    assert [r.seq for r in rows] == list(range(1, len(EXPECTED) + 1))
    assert {r.practice_id for r in rows} == {staff.practice_id}


async def test_events_carry_no_secret(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given the story's events
    await scripted_onboarding(api, staff.token, mailbox)
    # then no column holds an address, a token or a password
    rows = await PortalEvent.all().values()
    text = repr(rows)
    assert "@" not in text and "avery" not in text.lower()
    for row in rows:
        assert set(row) == {
            "id", "practice_id", "patient_id", "seq", "type", "portal_status", "occurred_at"
        }


async def test_a_bulk_invitation_writes_one_event_per_patient_set_based(
    api: Api, staff: Staff
) -> None:
    # given 30 enabled patients
    ids = [await enabled_patient(api, staff.token, n=n) for n in range(1, 31)]
    # when one bulk invitation goes to all of them
    result = await api.gql(SEND, {"ids": ids}, staff.token)
    assert all(r["userErrors"] == [] for r in result["data"]["sendInvitation"]["results"])
    # then each has exactly its enable and invitation events, in that order
    sent = await PortalEvent.filter(type="invitation.sent").values_list("patient_id", "seq")
    assert sorted(sent) == sorted((patient_pk(i), 2) for i in ids)
    statuses = await PortalEvent.filter(type="invitation.sent").values_list(
        "portal_status", flat=True
    )
    assert set(statuses) == {"INVITED"}


async def test_a_refused_change_writes_no_event(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    # given a patient of another practice
    pid = await create_patient(api, other_staff.token)
    # when this practice tries to invite it
    await api.gql(SEND, {"ids": [pid]}, staff.token)
    # then nothing happened, so nothing is an event
    assert await PortalEvent.all().count() == 0


async def test_an_expired_invitation_is_an_event_once(api: Api, staff: Staff) -> None:
    import time_machine

    from core.clock import utcnow
    from onboarding.expiry import announce_expired_invitations

    # given an invited patient whose link then expires unused
    pid = await enabled_patient(api, staff.token)
    await api.gql(SEND, {"ids": [pid]}, staff.token)
    assert await announce_expired_invitations() == 0
    later = utcnow() + api.settings.staff_link_ttl + timedelta(minutes=1)
    with time_machine.travel(later, tick=False):
        # when the job runs, twice (as several workers would)
        assert await announce_expired_invitations() == 1
        assert await announce_expired_invitations() == 0
    # then there is one invitation.expired event, with the status it leads to
    rows = await PortalEvent.filter(patient_id=patient_pk(pid)).order_by("seq")
    assert [(r.type, r.portal_status) for r in rows][-1] == (
        "invitation.expired", "INVITATION_EXPIRED"
    )
    assert [r.type for r in rows].count("invitation.expired") == 1
