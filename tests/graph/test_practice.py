"""SPEC 9.1: the practice profile, its administrators, and messages that use it."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

from models import AuditEvent, Practice
from onboarding.admin import create_staff
from tests.conftest import Api, Mailbox, Staff, body_text
from tests.helpers import enabled_patient, invite
from tests.test_cli import portal

PRACTICE = """{ practice { id displayName phone replyTo senderName website timeZone } }"""
UPDATE = """
mutation($input: UpdatePracticeInput!) {
  updatePractice(input: $input) {
    practice { displayName phone replyTo senderName website timeZone }
    userErrors { field code message }
  }
}"""

PROFILE = {
    "displayName": "Maple Street Family Clinic",
    "phone": "(617) 555-0142",
    "replyTo": "front.desk@maple-street.example",
    "senderName": "Maple Street Front Desk",
    "website": "https://maple-street.example/portal",
    "timeZone": "America/Chicago",
}


async def admin_token(staff: Staff) -> str:
    _, token = await create_staff(staff.practice_id, "Pat Practice Admin", admin=True)
    return token


async def test_staff_read_the_profile_and_only_admins_change_it(api: Api, staff: Staff) -> None:
    # given a practice with an ordinary staff user and an administrator
    admin = await admin_token(staff)
    before = (await api.gql(PRACTICE, token=staff.token))["data"]["practice"]
    assert before["displayName"] == "Maple Street Clinic" and before["timeZone"] == "UTC"

    # when the ordinary staff user tries to edit it
    refused = (await api.gql(UPDATE, {"input": PROFILE}, staff.token))["data"]["updatePractice"]

    # then FORBIDDEN, nothing written
    assert refused["practice"] is None
    assert [e["code"] for e in refused["userErrors"]] == ["FORBIDDEN"]
    assert (await Practice.get(id=staff.practice_id)).phone is None

    # when the administrator edits it
    done = (await api.gql(UPDATE, {"input": PROFILE}, admin))["data"]["updatePractice"]

    # then the phone is stored as E.164 and everyone reads the new profile
    assert done["userErrors"] == []
    read = (await api.gql(PRACTICE, token=staff.token))["data"]["practice"]
    assert read == {**PROFILE, "id": before["id"], "phone": "+16175550142"}
    events = await AuditEvent.filter(action="practice.updated")
    assert len(events) == 1 and events[0].detail == {
        "fields": ["name", "phone", "reply_to", "sender_name", "time_zone", "website"]
    }


async def test_bad_profile_values_are_refused_with_their_fields(api: Api, staff: Staff) -> None:
    admin = await admin_token(staff)
    bad = {
        "phone": "555-01",
        "replyTo": "not an address",
        "timeZone": "Mars/Olympus_Mons",
        "website": "javascript:alert(1)",
        "displayName": "  ",
    }
    result = (await api.gql(UPDATE, {"input": bad}, admin))["data"]["updatePractice"]
    assert result["practice"] is None
    assert sorted(e["field"][0] for e in result["userErrors"]) == sorted(
        ["phone", "replyTo", "timeZone", "website", "name"]
    )
    assert {e["code"] for e in result["userErrors"]} == {"INVALID_INPUT"}
    practice = await Practice.get(id=staff.practice_id)
    assert (practice.name, practice.phone, practice.time_zone) == ("Maple Street Clinic", None, "UTC")


async def test_messages_name_the_clinic_give_its_phone_and_reply_to_it(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a clinic profile in Chicago time
    admin = await admin_token(staff)
    assert (await api.gql(UPDATE, {"input": PROFILE}, admin))["data"]["updatePractice"][
        "userErrors"
    ] == []
    pid = await enabled_patient(api, staff.token)

    # when staff send an invitation
    sent = await invite(api, staff.token, pid)
    await api.deliver()
    [message] = mailbox.to("avery.quinn1@example.com")

    # then it comes from the clinic's sender name, replies go to the clinic, and the text
    # and HTML name the clinic and give its phone
    assert parseaddr(message["From"]) == ("Maple Street Front Desk", "portal@clinic.test")
    assert message["Reply-To"] == "front.desk@maple-street.example"
    assert "Maple Street Family Clinic" in message["Subject"]
    text = body_text(message)
    html = next(
        p.get_payload(decode=True).decode()
        for p in message.walk()
        if p.get_content_type() == "text/html"
    )
    for body in (text, html):
        assert "Call Maple Street Family Clinic at (617) 555-0142" in body
        assert "https://maple-street.example/portal" in body
    # and the expiry is written in the clinic's time zone
    expires = datetime.fromisoformat(sent["invitation"]["expiresAt"]).astimezone(
        ZoneInfo("America/Chicago")
    )
    hour = expires.strftime("%-I:%M %p")
    zone = "CST" if not expires.dst() else "CDT"
    assert f"{hour} {zone}" in text


def test_cli_creates_administrators_and_plain_staff(tmp_path: Path) -> None:
    practice = portal(tmp_path, "create-practice", "--name", "Lakeside Pediatrics")
    practice_id = practice.stdout.strip().splitlines()[-1]
    portal(tmp_path, "create-staff", "--practice", practice_id, "--name", "Robin", "--admin")
    portal(tmp_path, "create-staff", "--practice", practice_id, "--name", "Sam")
    db = sqlite3.connect(tmp_path / "cli.sqlite3")
    rows = db.execute("SELECT name, is_admin FROM staff_user ORDER BY id").fetchall()
    assert rows == [("Robin", 1), ("Sam", 0)]


SET_CREDENTIALS = """
mutation($pid: ID!, $u: String!, $p: String) {
  setCredentials(input: {patientId: $pid, username: $u, password: $p}) {
    account { username } userErrors { field code message }
  }
}"""


async def test_a_username_changed_by_staff_is_not_announced_as_a_password_change(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a patient whose staff-set credentials were announced as such
    pid = await enabled_patient(api, staff.token)
    first = await api.gql(
        SET_CREDENTIALS, {"pid": pid, "u": "avery.q", "p": "kettle-maple-sunrise-7"}, staff.token
    )
    assert first["data"]["setCredentials"]["userErrors"] == []
    await api.deliver()
    [staff_set] = mailbox.to("avery.quinn1@example.com")
    assert staff_set["Subject"] == (
        "Your clinic set a password for your Maple Street Clinic patient portal"
    )
    mailbox.clear()

    # when staff change the username alone
    renamed = await api.gql(SET_CREDENTIALS, {"pid": pid, "u": "avery.quinn"}, staff.token)
    assert renamed["data"]["setCredentials"]["userErrors"] == []
    await api.deliver()

    # then the patient hears of a username change, and nothing about a password
    [notice] = mailbox.to("avery.quinn1@example.com")
    assert notice["Subject"] == "Your Maple Street Clinic patient portal username was changed"
    text = body_text(notice)
    assert "Your username is now: avery.quinn" in text
    assert "Your password did not change." in text
    assert "password was changed" not in text and "set a temporary password" not in text
