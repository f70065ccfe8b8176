"""SPEC 9.2/9.3: a patient's language, mobile phone and consent; links and notices by
text message through the Twilio transport against a local stand-in that checks requests
as Twilio does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine

from core.clock import utcnow
from graph.ids import patient_pk
from mail.sms import gsm7_length
from models import AuditEvent, OutboxMessage, OutboxStatus
from onboarding.admin import create_staff
from onboarding.reminders import send_due_reminders
from tests.conftest import Api, Mailbox, Staff, body_text, twilio_settings
from tests.helpers import CREATE_PATIENT, ENABLE, REDEEM, STRONG_PASSWORD, chart
from tests.twilio_fake import FROM, TwilioFake

UPDATE_PRACTICE = """
mutation($input: UpdatePracticeInput!) { updatePractice(input: $input) { userErrors { code } } }"""
UPDATE_PATIENT = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) {
    patient { id preferredLanguage mobilePhone smsConsent portalStatus }
    userErrors { field code message }
  }
}"""
SEND = """
mutation($ids: [ID!]!, $channel: Channel) {
  sendInvitation(input: {patientIds: $ids, channel: $channel}) {
    results { invitation { sentTo channel } userErrors { field code message } }
  }
}"""
SEND_FILTER = """
mutation($filter: OnboardingFilter!, $channel: Channel) {
  sendInvitation(input: {filter: $filter, channel: $channel}) {
    results { requestedId invitation { sentTo channel } userErrors { code } }
  }
}"""
PATIENT = """
query($id: ID!) {
  patient(id: $id) {
    portalStatus preferredLanguage mobilePhone smsConsent
    lastInvitation { sentTo channel deliveryStatus deliveryDetail revokedAt }
  }
}"""
LIST = """
query($filter: OnboardingFilter) {
  onboarding(first: 50, filter: $filter) {
    totalCount statusCounts { status count } edges { node { id } }
  }
}"""
TOKEN_INFO = """query($t: String!) { tokenInfo(token: $t) { valid error } }"""

MOBILE = "+16175550123"
CLINIC_PHONE = "(617) 555-0142"


@pytest.fixture
def settings_overrides(twilio: TwilioFake) -> dict[str, Any]:
    return twilio_settings(twilio)


async def clinic_profile(staff: Staff, api: Api) -> None:
    _, admin = await create_staff(staff.practice_id, "Pat Admin", admin=True)
    result = await api.gql(
        UPDATE_PRACTICE,
        {"input": {"phone": CLINIC_PHONE, "replyTo": "desk@maple.example"}},
        admin,
    )
    assert result["data"]["updatePractice"]["userErrors"] == []


async def new_patient(api: Api, staff: Staff, n: int = 1, enable: bool = True, **fields: Any) -> str:
    values = chart(n, **fields)
    result = await api.gql(CREATE_PATIENT, {"input": values}, staff.token)
    payload = result["data"]["createPatient"]
    assert payload["userErrors"] == [], payload
    pid = payload["patient"]["id"]
    if enable:
        enabled = await api.gql(ENABLE, {"ids": [pid]}, staff.token)
        assert enabled["data"]["enablePortal"]["results"][0]["userErrors"] == []
    return pid


async def patient(api: Api, staff: Staff, pid: str) -> dict[str, Any]:
    return (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]


def token_in(text: str) -> str:
    return text.split("#token=", 1)[1].split()[0]


async def test_spanish_mobile_only_patient_is_invited_by_text_and_told_in_spanish(
    api: Api, staff: Staff, twilio: TwilioFake, mailbox: Mailbox
) -> None:
    # given a clinic with a phone, and a Spanish-speaking patient with only a mobile phone
    # (typed in national form) who agreed to texts
    await clinic_profile(staff, api)
    pid = await new_patient(
        api, staff, email=None, preferredLanguage="es-MX", mobilePhone="(617) 555-0123",
        smsConsent=True,
    )
    state = await patient(api, staff, pid)
    assert (state["mobilePhone"], state["smsConsent"], state["preferredLanguage"]) == (
        MOBILE, True, "es-MX",
    )
    # a consented mobile is somewhere to send a link: not NO_EMAIL
    assert state["portalStatus"] == "NOT_INVITED"

    # when staff send the invitation without naming a channel
    sent = (await api.gql(SEND, {"ids": [pid]}, staff.token))["data"]["sendInvitation"]
    [row] = sent["results"]
    assert row["userErrors"] == []
    assert row["invitation"] == {"sentTo": MOBILE, "channel": "SMS"}
    await api.deliver()

    # then Twilio received one Spanish text, in GSM-7 and one segment, from our number,
    # naming the clinic and giving its phone; no email went anywhere
    [text] = twilio.to(MOBILE)
    assert text["From"] == FROM
    body = text["Body"]
    assert body.startswith(f"Maple Street Clinic {CLINIC_PHONE}: cree su cuenta del portal: https://")
    assert gsm7_length(body) is not None and gsm7_length(body) <= 160
    assert mailbox.messages == []
    invitation = (await patient(api, staff, pid))["lastInvitation"]
    assert invitation["channel"] == "SMS" and invitation["deliveryStatus"] == "SENT"
    assert invitation["deliveryDetail"].startswith("queued SM")

    # when the patient redeems the texted link
    redeemed = await api.gql(
        REDEEM,
        {"input": {"token": token_in(body), "username": "rosa.d", "password": STRONG_PASSWORD}},
    )
    assert redeemed["data"]["redeemToken"]["userErrors"] == []
    await api.deliver()

    # then the notice comes by text too, in Spanish, as a welcome (not "changed")
    notice = twilio.to(MOBILE)[-1]["Body"]
    assert notice == (
        f"Maple Street Clinic {CLINIC_PHONE}: ya puede usar su cuenta del portal."
        " Si no fue usted, llame."
    )
    assert (await patient(api, staff, pid))["portalStatus"] == "ACTIVE"


async def test_a_bounced_text_revokes_the_link_and_shows_the_providers_reply(
    api: Api, staff: Staff, twilio: TwilioFake
) -> None:
    # given a patient whose number Twilio refuses (21211)
    bad = "+16175550199"
    twilio.invalid.add(bad)
    pid = await new_patient(api, staff, email=None, mobilePhone=bad, smsConsent=True)

    # when the invitation is sent
    assert (await api.gql(SEND, {"ids": [pid]}, staff.token))["data"]["sendInvitation"][
        "results"
    ][0]["userErrors"] == []
    await api.deliver()

    # then the delivery FAILED at once (no retry), with Twilio's words, and the link is dead
    state = await patient(api, staff, pid)
    invitation = state["lastInvitation"]
    assert invitation["deliveryStatus"] == "FAILED"
    # (the number Twilio quotes is cut out: the reply is logged too)
    assert invitation["deliveryDetail"] == (
        "21211 The 'To' number <recipient> is not a valid phone number."
    )
    assert invitation["revokedAt"] is not None
    [row] = await OutboxMessage.filter(patient_id=patient_pk(pid))
    assert (row.status, row.attempts, row.channel, row.params) == (
        OutboxStatus.FAILED, 1, "sms", {},
    )
    assert state["portalStatus"] == "INVITATION_EXPIRED"
    assert twilio.received == []


async def test_throttled_texts_are_retried_then_sent(
    api: Api, staff: Staff, twilio: TwilioFake
) -> None:
    # given Twilio answers 429 once for this number
    twilio.throttle[MOBILE] = 1
    pid = await new_patient(api, staff, email=None, mobilePhone=MOBILE, smsConsent=True)
    await api.gql(SEND, {"ids": [pid]}, staff.token)

    # when the dispatcher runs
    await api.deliver()

    # then the message waits for a retry, the link still usable
    [row] = await OutboxMessage.filter(patient_id=patient_pk(pid))
    assert (row.status, row.attempts, row.last_error) == (
        OutboxStatus.PENDING, 1, "20429 Too Many Requests",
    )
    assert (await patient(api, staff, pid))["lastInvitation"]["deliveryStatus"] == "QUEUED"

    # when its backoff has passed
    await OutboxMessage.filter(id=row.id).update(next_attempt_at=utcnow() - timedelta(seconds=1))
    await api.deliver()

    # then it is sent once
    assert len(twilio.to(MOBILE)) == 1
    assert (await patient(api, staff, pid))["lastInvitation"]["deliveryStatus"] == "SENT"


async def test_texts_need_consent_and_no_email_means_nowhere_to_send(
    api: Api, staff: Staff, twilio: TwilioFake
) -> None:
    # given a mobile-only patient who has not agreed to texts
    pid = await new_patient(api, staff, email=None, mobilePhone=MOBILE)
    assert (await patient(api, staff, pid))["portalStatus"] == "NO_EMAIL"

    # when staff ask for a text, or for the default channel
    by_text = (await api.gql(SEND, {"ids": [pid], "channel": "SMS"}, staff.token))["data"]
    default = (await api.gql(SEND, {"ids": [pid]}, staff.token))["data"]

    # then each is refused with a clear code, nothing sent
    [refused] = by_text["sendInvitation"]["results"][0]["userErrors"]
    assert refused["code"] == "NO_SMS_CONSENT"
    assert "consent" in refused["message"]
    [nowhere] = default["sendInvitation"]["results"][0]["userErrors"]
    assert nowhere["code"] == "NO_EMAIL_ON_FILE"
    await api.deliver()
    assert twilio.received == []

    # when consent is recorded, the patient becomes reachable (status and filters follow)
    given = await api.gql(
        UPDATE_PATIENT, {"input": {"id": pid, "smsConsent": True}}, staff.token
    )
    assert given["data"]["updatePatient"]["patient"]["portalStatus"] == "NOT_INVITED"
    # and it is audited with who gave it
    [event] = await AuditEvent.filter(action="sms_consent.given", patient_id=patient_pk(pid))
    assert event.actor_id == staff.staff_id

    # when the number goes, consent goes with it (and is audited as withdrawn)
    removed = await api.gql(
        UPDATE_PATIENT, {"input": {"id": pid, "mobilePhone": None}}, staff.token
    )
    assert removed["data"]["updatePatient"]["patient"]["smsConsent"] is False
    assert await AuditEvent.filter(action="sms_consent.withdrawn", patient_id=patient_pk(pid)).count() == 1


async def test_the_onboarding_tool_filters_and_counts_by_reachability(
    api: Api, staff: Staff, twilio: TwilioFake
) -> None:
    email_only = await new_patient(api, staff, 1)
    text_only = await new_patient(api, staff, 2, email=None, mobilePhone=MOBILE, smsConsent=True)
    no_consent = await new_patient(api, staff, 3, email=None, mobilePhone="+16175550124")
    nothing = await new_patient(api, staff, 4, email=None)

    async def ids(reachable: list[str]) -> set[str]:
        data = (await api.gql(LIST, {"filter": {"reachableBy": reachable}}, staff.token))["data"]
        return {e["node"]["id"] for e in data["onboarding"]["edges"]}

    assert await ids(["EMAIL"]) == {email_only}
    assert await ids(["SMS"]) == {text_only}
    assert await ids(["NONE"]) == {no_consent, nothing}
    assert await ids(["EMAIL", "SMS"]) == {email_only, text_only}
    counts = (await api.gql(LIST, {"filter": None}, staff.token))["data"]["onboarding"]
    by_status = {c["status"]: c["count"] for c in counts["statusCounts"]}
    assert by_status["NO_EMAIL"] == 2 and by_status["NOT_INVITED"] == 2

    # sending by filter: every reachable-by-text patient gets a text
    sent = (
        await api.gql(
            SEND_FILTER, {"filter": {"reachableBy": ["SMS"]}, "channel": "SMS"}, staff.token
        )
    )["data"]["sendInvitation"]["results"]
    assert [r["invitation"] for r in sent] == [{"sentTo": MOBILE, "channel": "SMS"}]
    await api.deliver()
    assert len(twilio.to(MOBILE)) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mobilePhone", "555-01"),
        ("mobilePhone", "+5215512345678"),
        ("preferredLanguage", "not a language!"),
        ("smsConsent", True),  # no mobile phone on file
    ],
)
async def test_bad_contact_fields_are_refused_and_nothing_is_written(
    api: Api, staff: Staff, field: str, value: Any
) -> None:
    result = await api.gql(CREATE_PATIENT, {"input": chart(1, email=None, **{field: value})}, staff.token)
    payload = result["data"]["createPatient"]
    assert payload["patient"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [([field], "INVALID_INPUT")]


async def test_unshipped_languages_fall_back_to_english(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await new_patient(api, staff, preferredLanguage="fr-CA")
    assert (await patient(api, staff, pid))["preferredLanguage"] == "fr-CA"
    await api.gql(SEND, {"ids": [pid]}, staff.token)
    await api.deliver()
    [message] = mailbox.to("avery.quinn1@example.com")
    assert message["Subject"].startswith("Welcome to the Maple Street Clinic patient portal")
    assert "Hello Avery," in body_text(message)


async def test_a_texted_invitation_gets_its_reminder_by_text_and_dies_with_the_number(
    api: Api, staff: Staff, twilio: TwilioFake
) -> None:
    # given an unused texted invitation
    pid = await new_patient(api, staff, email=None, mobilePhone=MOBILE, smsConsent=True)
    await api.gql(SEND, {"ids": [pid]}, staff.token)
    await api.deliver()
    [first] = twilio.to(MOBILE)

    # when the reminder job runs near its expiry
    with time_machine.travel(utcnow() + timedelta(hours=19), tick=False):
        assert await send_due_reminders(api.settings) == 1
        await api.deliver()

    # then the reminder is a text with its own words and a fresh link
    reminder = twilio.to(MOBILE)[-1]["Body"]
    assert reminder.startswith("Maple Street Clinic: reminder, new portal link: https://")
    fresh = token_in(reminder)
    assert fresh != token_in(first["Body"])
    assert (await api.gql(TOKEN_INFO, {"t": fresh}))["data"]["tokenInfo"]["valid"] is True

    # when the patient's number changes, the texted link dies with the old number
    changed = await api.gql(
        UPDATE_PATIENT, {"input": {"id": pid, "mobilePhone": "+16175550124"}}, staff.token
    )
    assert changed["data"]["updatePatient"]["userErrors"] == []
    info = (await api.gql(TOKEN_INFO, {"t": fresh}))["data"]["tokenInfo"]
    assert info == {"valid": False, "error": "TOKEN_INVALID"}
    # and consent stays with the patient, not with the number
    assert changed["data"]["updatePatient"]["patient"]["smsConsent"] is True
