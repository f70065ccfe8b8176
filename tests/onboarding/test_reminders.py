"""One reminder with a fresh link before an unused staff link expires (SPEC 7.4)."""

from datetime import timedelta

import time_machine

from core.clock import utcnow
from onboarding.reminders import send_due_reminders
from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import enabled_patient, invite

TOKEN_INFO = "query($t: String!) { tokenInfo(token: $t) { valid error } }"


async def test_one_reminder_with_a_fresh_link(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given an invitation nobody used
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await api.deliver()
    [first] = mailbox.messages
    old_token = token_from(first)

    # when the clock nears its expiry (inside the 6 h window) and the job runs twice
    with time_machine.travel(utcnow() + timedelta(hours=19), tick=False):
        assert await send_due_reminders(api.settings) == 1
        assert await send_due_reminders(api.settings) == 0
        await api.deliver()
        # then one more message arrives, with a fresh link that replaces the old one
        assert len(mailbox.messages) == 2
        new_token = token_from(mailbox.messages[1])
        assert new_token != old_token
        old = await api.gql(TOKEN_INFO, {"t": old_token})
        new = await api.gql(TOKEN_INFO, {"t": new_token})
        assert old["data"]["tokenInfo"] == {"valid": False, "error": "TOKEN_INVALID"}
        assert new["data"]["tokenInfo"] == {"valid": True, "error": None}

    # and the fresh link is never reminded again
    with time_machine.travel(utcnow() + timedelta(hours=19 + 20), tick=False):
        assert await send_due_reminders(api.settings) == 0


async def test_no_reminder_when_off_or_when_the_address_changed(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    later = utcnow() + timedelta(hours=20)
    with time_machine.travel(later, tick=False):
        off = api.settings.model_copy(update={"reminder_before_expiry_minutes": 0})
        assert await send_due_reminders(off) == 0
    await api.gql(
        'mutation($id: ID!) { updatePatient(input: {id: $id, email: "new.address@example.com"}) { userErrors { code } } }',
        {"id": pid}, staff.token,
    )
    with time_machine.travel(later, tick=False):
        assert await send_due_reminders(api.settings) == 0
