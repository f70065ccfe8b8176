"""A clinic that does not text (PORTAL_SMS_BACKEND=off, which production accepts as well
as twilio): links are refused by text with a clear code, and a text that still reaches
the outbox fails at once with a reason instead of waiting for a provider."""

from __future__ import annotations

from typing import Any

import pytest

from graph.ids import patient_pk
from models import LinkToken, OutboxMessage, OutboxStatus
from tests.conftest import Api, Staff
from tests.graph.test_text_messages import MOBILE, SEND, new_patient

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username } userErrors { field code } }
}"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"sms_backend": "off"}


async def test_links_by_text_are_refused_with_a_clear_code_and_nothing_is_queued(
    api: Api, staff: Staff
) -> None:
    # given a patient whose only address is a consented mobile
    pid = await new_patient(api, staff, email=None, mobilePhone=MOBILE, smsConsent=True)

    # when staff send the invitation by text, or by the default channel
    for variables in ({"ids": [pid], "channel": "SMS"}, {"ids": [pid]}):
        sent = (await api.gql(SEND, variables, staff.token))["data"]["sendInvitation"]
        [row] = sent["results"]
        # then it is refused as a setting of the clinic, not as a fault of the patient
        assert row["invitation"] is None
        assert [e["code"] for e in row["userErrors"]] == ["SMS_NOT_AVAILABLE"]

    # and no link or message was written
    assert await LinkToken.filter(patient_id=patient_pk(pid)).count() == 0
    assert await OutboxMessage.filter(patient_id=patient_pk(pid)).count() == 0


async def test_a_text_that_still_reaches_the_outbox_fails_at_once_with_the_reason(
    api: Api, staff: Staff
) -> None:
    # given a mobile-only patient with consent, whose notices would go by text
    pid = await new_patient(api, staff, email=None, mobilePhone=MOBILE, smsConsent=True)

    # when staff set credentials (the patient is told by their only channel)
    result = await api.gql(
        SET_CREDENTIALS,
        {
            "input": {
                "patientId": pid,
                "username": "mobile.only",
                "password": "kettle-maple-sunrise",
            }
        },
        staff.token,
    )
    assert result["data"]["setCredentials"]["userErrors"] == []
    await api.deliver()

    # then the text is given up at once with a reason that names the setting
    [row] = await OutboxMessage.filter(patient_id=patient_pk(pid))
    assert row.channel == "sms"
    assert row.status == OutboxStatus.FAILED
    assert "PORTAL_SMS_BACKEND=off" in (row.last_error or "")
