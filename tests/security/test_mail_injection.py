"""Mail header injection and recipient control (SECURITY NOTIF-3: the link only goes to the
address on file; TOK-8: nothing from the request shapes the message; SPEC 6)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, Mailbox, Staff, body_text
from tests.helpers import CREATE_PATIENT, SEND, chart, enabled_patient, invite
from tests.security.support import UPDATE_PATIENT, table_rows

INJECTED_EMAILS = [
    "victim@example.com\r\nBcc: attacker@evil.example",
    "victim@example.com\nBcc: attacker@evil.example",
    "victim@example.com\rBcc: attacker@evil.example",
    "victim@example.com%0d%0aBcc:attacker@evil.example",
    "victim@example.com, attacker@evil.example",
    "victim@example.com;attacker@evil.example",
    "Victim <attacker@evil.example>",
    '"victim@example.com" <attacker@evil.example>',
    "victim@example.com\x00attacker@evil.example",
    "victim@example.com\u2028Bcc: attacker@evil.example",
]
INJECTED_NAMES = [
    "Avery\r\nBcc: attacker@evil.example",
    "Avery\nSubject: free money",
    "Avery\rX-Injected: 1",
    "Avery\x00",
    "Avery\x1b[31m",
]

HEADERS = {"from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version", "content-type"}


@pytest.mark.parametrize("email", INJECTED_EMAILS)
async def test_hostile_email_addresses_are_refused(api: Api, staff: Staff, email: str) -> None:
    """NOTIF-3, SPEC 6: createPatient and updatePatient refuse an email with CR/LF, NUL,
    Unicode line separators, several addresses or a display name: INVALID_INPUT on the
    email field, nothing written."""
    created = await api.gql(CREATE_PATIENT, {"input": chart(1, email=email)}, staff.token)
    payload = created["data"]["createPatient"]
    assert payload["patient"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("INVALID_INPUT", ["email"])]
    assert await table_rows("patient") == []

    pid = await enabled_patient(api, staff.token, n=2)
    updated = await api.gql(UPDATE_PATIENT, {"input": {"id": pid, "email": email}}, staff.token)
    errors = updated["data"]["updatePatient"]["userErrors"]
    assert [(e["code"], e["field"]) for e in errors] == [("INVALID_INPUT", ["email"])]
    [row] = await table_rows("patient")
    assert row["email"] == "avery.quinn2@example.com"


@pytest.mark.parametrize("name", INJECTED_NAMES)
@pytest.mark.parametrize("field", ["firstName", "lastName"])
async def test_control_characters_in_names_are_refused(
    api: Api, staff: Staff, field: str, name: str
) -> None:
    """SPEC 6: names with CR/LF or other control characters are refused at createPatient and
    updatePatient with INVALID_INPUT."""
    created = await api.gql(CREATE_PATIENT, {"input": chart(1, **{field: name})}, staff.token)
    assert [e["code"] for e in created["data"]["createPatient"]["userErrors"]] == ["INVALID_INPUT"]
    pid = await enabled_patient(api, staff.token, n=2)
    updated = await api.gql(UPDATE_PATIENT, {"input": {"id": pid, field: name}}, staff.token)
    assert [e["code"] for e in updated["data"]["updatePatient"]["userErrors"]] == ["INVALID_INPUT"]


async def test_accepted_odd_names_cannot_add_headers(
    api: Api, staff: Staff, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NOTIF-3, SPEC 6: names the service does accept (Unicode line/paragraph separators,
    NEL, HTML) only ever reach the body, encoded; the message has exactly the expected
    headers and one envelope recipient, the address on file."""
    recipients: list[list[str]] = []
    real_data = mailbox.handle_DATA

    async def recording(server: Any, session: Any, envelope: Any) -> str:
        recipients.append(list(envelope.rcpt_tos))
        return await real_data(server, session, envelope)

    monkeypatch.setattr(mailbox, "handle_DATA", recording)
    odd = "Avery\u2028Bcc: attacker@evil.example\u2029X-Evil: 1\u0085<script>alert(1)</script>"
    created = await api.gql(CREATE_PATIENT, {"input": chart(1, firstName=odd)}, staff.token)
    payload = created["data"]["createPatient"]
    if payload["userErrors"]:
        assert [e["code"] for e in payload["userErrors"]] == ["INVALID_INPUT"]
        return  # refusing is the other acceptable outcome
    pid = payload["patient"]["id"]
    await api.gql(
        "mutation($ids: [ID!]!) { enablePortal(input: {patientIds: $ids}) { userErrors { code } } }",
        {"ids": [pid]},
        staff.token,
    )
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()

    [message] = mailbox.messages
    assert recipients == [["avery.quinn1@example.com"]]
    assert {k.lower() for k in message.keys()} <= HEADERS
    assert message.get_all("To") == ["avery.quinn1@example.com"]
    for header in ("Bcc", "Cc", "X-Evil", "Reply-To"):
        assert message.get(header) is None
    html = next(p for p in message.walk() if p.get_content_type() == "text/html")
    html_text = html.get_payload(decode=True).decode()
    assert "<script>" not in html_text and "&lt;script&gt;" in html_text
    assert "attacker@evil.example" not in str(message.get("To"))
    assert "Bcc" not in message.as_string().split("\n\n", 1)[0]
    assert body_text(message)


async def test_invitation_goes_to_the_address_on_file_only(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """NOTIF-3: sendInvitation takes no address: the link goes to the chart's email, and a
    family address shared with other charts needs explicit confirmation (EMAIL_SHARED)."""
    fields = await api.gql('{ __type(name: "SendInvitationInput") { inputFields { name } } }')
    names = {f["name"] for f in fields["data"]["__type"]["inputFields"]}
    assert not any("email" in n.lower() and n != "confirmSharedEmail" for n in names), names
    assert not any(n.lower() in ("to", "address", "recipient", "sendto") for n in names)

    first = await enabled_patient(api, staff.token, n=1, email="family@example.com")
    await enabled_patient(api, staff.token, n=2, email="Family@Example.com")
    refused = await api.gql(SEND, {"ids": [first], "confirm": False}, staff.token)
    result = refused["data"]["sendInvitation"]["results"][0]
    assert [e["code"] for e in result["userErrors"]] == ["EMAIL_SHARED"]
    await api.deliver()
    assert mailbox.messages == []

    confirmed = await api.gql(SEND, {"ids": [first], "confirm": True}, staff.token)
    sent = confirmed["data"]["sendInvitation"]["results"][0]
    assert sent["invitation"]["sentTo"] == "family@example.com"
    await api.deliver()
    assert [m["To"] for m in mailbox.messages] == ["family@example.com"]
