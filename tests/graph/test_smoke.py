"""The whole staff-to-patient path once, as the README's worked example runs it."""

from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import LOGIN, PATIENT, REDEEM, STRONG_PASSWORD, enabled_patient, invite


async def test_invite_redeem_login(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given an enabled patient with an email on file
    pid = await enabled_patient(api, staff.token)

    # when staff send the invitation and the patient redeems the emailed link
    result = await invite(api, staff.token, pid)
    assert result["userErrors"] == []
    assert result["invitation"]["sentTo"] == "avery.quinn1@example.com"
    await api.deliver()
    [message] = mailbox.to("avery.quinn1@example.com")
    token = token_from(message)
    redeemed = await api.gql(
        REDEEM, {"input": {"token": token, "username": "avery.q", "password": STRONG_PASSWORD}}
    )

    # then the account exists, the patient can log in, and the status is ACTIVE
    assert redeemed["data"]["redeemToken"] == {"account": {"username": "avery.q"}, "userErrors": []}
    login = await api.gql(LOGIN, {"u": "AVERY.Q", "p": STRONG_PASSWORD})
    assert login["data"]["login"]["userErrors"] == []
    assert login["data"]["login"]["sessionToken"].startswith("ses_")
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert patient["portalStatus"] == "ACTIVE"
    assert patient["lastInvitation"]["deliveryStatus"] == "SENT"
    assert patient["lastInvitation"]["usedAt"] is not None
