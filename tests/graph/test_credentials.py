"""setCredentials and usernameAvailable: staff type a username and, optionally, a password
(SPEC 2.4, section 3 passwords, 7.8 usernames that cannot impersonate)."""

from __future__ import annotations

import asyncio
from typing import Any

from tortoise import connections

from models import AuditEvent, LinkToken, PortalAccount
from tests.conftest import TABLES, Api, Mailbox, Staff, body_text
from tests.helpers import LOGIN, PATIENT, create_patient, enabled_patient, invite, pk

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) {
    account { username mustChangePassword lastLoginAt locked }
    userErrors { field code message }
  }
}"""

USERNAME_AVAILABLE = """
query($u: String!, $p: ID) {
  usernameAvailable(username: $u, patientId: $p) { valid available reason }
}"""

PASSWORD = "granite-lantern-window-7"
ARGON2_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


async def set_credentials(
    api: Api, token: str, patient_id: str, username: str, password: str | None = None
) -> dict[str, Any]:
    values: dict[str, Any] = {"patientId": patient_id, "username": username}
    if password is not None:
        values["password"] = password
    result = await api.gql(SET_CREDENTIALS, {"input": values}, token)
    assert "errors" not in result, result
    return result["data"]["setCredentials"]


async def username_available(
    api: Api, token: str, username: str, patient_id: str | None = None
) -> dict[str, Any]:
    result = await api.gql(USERNAME_AVAILABLE, {"u": username, "p": patient_id}, token)
    assert "errors" not in result, result
    return result["data"]["usernameAvailable"]


def codes(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(e["code"], e["field"]) for e in payload["userErrors"]]


async def status_of(api: Api, token: str, pid: str) -> dict[str, Any]:
    return (await api.gql(PATIENT, {"id": pid}, token))["data"]["patient"]


async def database_text() -> str:
    """Every value of every table, as text: what an attacker with a dump would see."""
    conn = connections.get("default")
    parts = []
    for table in TABLES:
        for row in await conn.execute_query_dict(f"SELECT * FROM {table}"):
            parts.extend(str(v) for v in row.values())
    return "\n".join(parts)


# --- setCredentials: success ----------------------------------------------------------------


async def test_set_username_only(api: Api, staff: Staff) -> None:
    # given an enabled patient without email
    pid = await enabled_patient(api, staff.token, n=1, email=None)

    # when staff set a username without a password
    payload = await set_credentials(api, staff.token, pid, "  Avery.Q  ")

    # then the account exists, without a password to change
    assert payload == {
        "account": {
            "username": "Avery.Q",
            "mustChangePassword": False,
            "lastLoginAt": None,
            "locked": False,
        },
        "userErrors": [],
    }
    account = await PortalAccount.get(patient_id=pk(pid))
    assert account.username_key == "avery.q"
    assert account.password_hash is None
    patient = await status_of(api, staff.token, pid)
    assert patient["portalStatus"] == "NO_EMAIL"
    assert patient["account"]["username"] == "Avery.Q"


async def test_set_username_and_password(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given an enabled patient with an outstanding invitation
    pid = await enabled_patient(api, staff.token, n=1)
    assert (await invite(api, staff.token, pid))["userErrors"] == []

    # when staff set a username and a password by hand
    payload = await set_credentials(api, staff.token, pid, "avery.q", PASSWORD)

    # then the password must be changed at next login, the status says so, the link is
    # revoked and the patient is told (without the password)
    assert payload["userErrors"] == []
    assert payload["account"]["username"] == "avery.q"
    assert payload["account"]["mustChangePassword"] is True
    patient = await status_of(api, staff.token, pid)
    assert patient["portalStatus"] == "CREDENTIALS_ISSUED"
    assert patient["account"]["mustChangePassword"] is True
    assert patient["lastInvitation"]["revokedAt"] is not None
    link = await LinkToken.get(patient_id=pk(pid))
    assert link.revoke_reason == "password_set"
    login = (await api.gql(LOGIN, {"u": "AVERY.Q", "p": PASSWORD}))["data"]["login"]
    assert login["userErrors"] == []
    assert login["mustChangePassword"] is True
    await api.deliver()
    notices = [m for m in mailbox.to("avery.quinn1@example.com") if "#token=" not in body_text(m)]
    assert len(notices) == 1
    assert PASSWORD not in notices[0].as_string()


async def test_set_credentials_stores_argon2id_and_never_the_password(
    api: Api, staff: Staff
) -> None:
    # given a patient with staff-set credentials
    pid = await enabled_patient(api, staff.token, n=1)
    payload = await set_credentials(api, staff.token, pid, "avery.q", PASSWORD)
    assert payload["userErrors"] == []

    # then the hash is argon2id at the OWASP parameters, and the raw password is nowhere
    account = await PortalAccount.get(patient_id=pk(pid))
    assert account.password_hash is not None
    assert account.password_hash.startswith(ARGON2_PREFIX)
    dump = await database_text()
    assert account.password_hash in dump  # the dump really covers the account table
    assert PASSWORD not in dump
    assert PASSWORD.upper() not in dump.upper()


async def test_set_credentials_changes_an_existing_username(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1, email=None)
    assert (await set_credentials(api, staff.token, pid, "first.name"))["userErrors"] == []
    payload = await set_credentials(api, staff.token, pid, "second.name")
    assert payload["userErrors"] == []
    assert await PortalAccount.filter(patient_id=pk(pid)).count() == 1
    assert (await PortalAccount.get(patient_id=pk(pid))).username == "second.name"
    # and re-setting its own username in another case is not "taken"
    payload = await set_credentials(api, staff.token, pid, "SECOND.name")
    assert payload["userErrors"] == []


async def test_staff_cannot_choose_an_email_username_even_the_patients_own(
    api: Api, staff: Staff
) -> None:
    """Only the patient, redeeming a link sent to that address, takes an email-shaped
    username: staff asking would learn whether the address is a username anywhere."""
    pid = await enabled_patient(api, staff.token, n=1)
    payload = await set_credentials(api, staff.token, pid, "Avery.Quinn1@example.com")
    assert payload["account"] is None
    assert codes(payload) == [("USERNAME_INVALID", ["username"])]


# --- setCredentials: errors -----------------------------------------------------------------


INVALID_USERNAMES = [
    "ab",
    "",
    "   ",
    "x" * 65,
    "has space",
    "-leading.dash",
    ".leading.dot",
    "semi;colon",
    "nul\x00byte",
    "ünïcode",
    "someone.else@example.com",
]


async def test_set_credentials_refuses_invalid_usernames(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    for username in INVALID_USERNAMES:
        payload = await set_credentials(api, staff.token, pid, username)
        assert payload["account"] is None, username
        assert codes(payload) == [("USERNAME_INVALID", ["username"])], username
    assert await PortalAccount.all().count() == 0


async def test_set_credentials_email_username_of_a_patient_without_email(
    api: Api, staff: Staff
) -> None:
    pid = await enabled_patient(api, staff.token, n=1, email=None)
    payload = await set_credentials(api, staff.token, pid, "avery.quinn1@example.com")
    assert codes(payload) == [("USERNAME_INVALID", ["username"])]


async def test_set_credentials_username_taken_in_another_case(api: Api, staff: Staff) -> None:
    # given a patient holding "Avery.Q"
    first = await enabled_patient(api, staff.token, n=1)
    assert (await set_credentials(api, staff.token, first, "Avery.Q"))["userErrors"] == []

    # when staff give another patient "aVERY.q"
    second = await enabled_patient(api, staff.token, n=2)
    payload = await set_credentials(api, staff.token, second, "aVERY.q", PASSWORD)

    # then USERNAME_TAKEN, and no account for the second patient
    assert payload["account"] is None
    assert codes(payload) == [("USERNAME_TAKEN", ["username"])]
    assert await PortalAccount.filter(patient_id=pk(second)).count() == 0
    assert await AuditEvent.filter(action="credentials.set").count() == 1


async def test_set_credentials_username_taken_across_practices(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    theirs = await enabled_patient(api, other_staff.token, n=1)
    assert (await set_credentials(api, other_staff.token, theirs, "shared.name"))[
        "userErrors"
    ] == []
    ours = await enabled_patient(api, staff.token, n=2)
    payload = await set_credentials(api, staff.token, ours, "SHARED.NAME")
    assert codes(payload) == [("USERNAME_TAKEN", ["username"])]


WEAK_PASSWORDS = [
    ("avery.q", "short-pw-1"),  # too short (< 12)
    ("avery.q", "password1234"),  # common word with digits
    ("avery.q", "iloveyou"),  # common and short
    ("avery.q", "abcabcabcabc"),  # repetitive
    ("avery.q", "x" * 129),  # too long
    ("lantern.window.42", "LANTERN.WINDOW.42"),  # equals the username
    ("avery.q", "my avery.quinn1@example.com pw"),  # contains the email
    ("avery.q", "MY AVERY.QUINN1@EXAMPLE.COM PW"),  # contains the email in capitals
    ("avery.q", "tab\tinside-this-phrase"),  # control character
]


async def test_set_credentials_refuses_weak_passwords(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    for username, password in WEAK_PASSWORDS:
        payload = await set_credentials(api, staff.token, pid, username, password)
        assert payload["account"] is None, password
        assert codes(payload) == [("PASSWORD_TOO_WEAK", ["password"])], password
        message = payload["userErrors"][0]["message"]
        # each problem is a whole predicate: never "password is must not …" (SPEC 9.4)
        assert message.startswith("the password "), message
        assert "is must" not in message and "is is" not in message, message
    assert await PortalAccount.all().count() == 0


async def test_set_credentials_reports_username_and_password_together(
    api: Api, staff: Staff
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    payload = await set_credentials(api, staff.token, pid, "x", "short")
    assert codes(payload) == [
        ("USERNAME_INVALID", ["username"]),
        ("PASSWORD_TOO_WEAK", ["password"]),
    ]
    assert await PortalAccount.all().count() == 0


async def test_set_credentials_portal_disabled(api: Api, staff: Staff) -> None:
    pid = await create_patient(api, staff.token, n=1)
    payload = await set_credentials(api, staff.token, pid, "avery.q", PASSWORD)
    assert payload["account"] is None
    assert codes(payload) == [("PORTAL_DISABLED", ["patientId"])]
    assert await PortalAccount.all().count() == 0


async def test_set_credentials_inactive_patient(api: Api, staff: Staff) -> None:
    # inactive and deceased charts, whether or not portal access was left on
    update = """mutation($id: ID!, $s: ChartStatus) {
      updatePatient(input: {id: $id, chartStatus: $s}) { userErrors { code } } }"""
    charts = []
    for n, status in enumerate(["INACTIVE", "DECEASED"]):
        charts.append(await create_patient(api, staff.token, n=n * 2, chartStatus=status))
        enabled = await enabled_patient(api, staff.token, n=n * 2 + 1)
        result = await api.gql(update, {"id": enabled, "s": status}, staff.token)
        assert result["data"]["updatePatient"]["userErrors"] == []
        charts.append(enabled)
    for pid in charts:
        payload = await set_credentials(api, staff.token, pid, f"user{pid}", PASSWORD)
        assert payload["account"] is None
        assert codes(payload) == [("INACTIVE_PATIENT", ["patientId"])]
    assert await PortalAccount.all().count() == 0


async def test_set_credentials_unknown_patient(api: Api, staff: Staff) -> None:
    for bad_id in ["999999", "abc", "", "-1", "0"]:
        payload = await set_credentials(api, staff.token, bad_id, "avery.q")
        assert payload["account"] is None
        assert codes(payload) == [("NOT_FOUND", ["patientId"])], bad_id


async def test_set_credentials_other_practice_is_not_found(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    theirs = await enabled_patient(api, other_staff.token, n=1)
    payload = await set_credentials(api, staff.token, theirs, "avery.q", PASSWORD)
    assert codes(payload) == [("NOT_FOUND", ["patientId"])]
    assert await PortalAccount.all().count() == 0


async def test_concurrent_set_credentials_same_username_in_other_case(
    api: Api, staff: Staff
) -> None:
    # given two patients
    first = await enabled_patient(api, staff.token, n=1, email=None)
    second = await enabled_patient(api, staff.token, n=2, email=None)

    # when two front desks give them the same username (different case) at the same time
    payloads = await asyncio.gather(
        set_credentials(api, staff.token, first, "Race.Winner"),
        set_credentials(api, staff.token, second, "race.WINNER"),
    )

    # then exactly one succeeds; the other is USERNAME_TAKEN
    ok = [p for p in payloads if p["userErrors"] == []]
    refused = [p for p in payloads if p["userErrors"]]
    assert len(ok) == 1
    assert len(refused) == 1
    assert codes(refused[0]) == [("USERNAME_TAKEN", ["username"])]
    assert refused[0]["account"] is None
    assert await PortalAccount.filter(username_key="race.winner").count() == 1
    assert await PortalAccount.all().count() == 1


# --- usernameAvailable ------------------------------------------------------------------------


async def test_username_available_for_a_free_name(api: Api, staff: Staff) -> None:
    assert await username_available(api, staff.token, "free.name") == {
        "valid": True,
        "available": True,
        "reason": None,
    }


async def test_username_taken_in_another_case(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1, email=None)
    assert (await set_credentials(api, staff.token, pid, "Taken.Name"))["userErrors"] == []
    check = await username_available(api, staff.token, "tAKEN.nAME")
    assert check["valid"] is True
    assert check["available"] is False
    assert check["reason"]
    # but it is "available" for the patient who already holds it
    own = await username_available(api, staff.token, "taken.name", pid)
    assert own == {"valid": True, "available": True, "reason": None}


async def test_username_available_invalid(api: Api, staff: Staff) -> None:
    for username in ["ab", "x" * 65, "with space", "_under", "semi;colon", "nul\x00"]:
        check = await username_available(api, staff.token, username)
        assert check["valid"] is False, username
        assert check["available"] is False
        assert check["reason"]


async def test_email_usernames_are_never_valid_for_staff(api: Api, staff: Staff) -> None:
    # given a patient with an email on file, and another with a different one
    pid = await enabled_patient(api, staff.token, n=1)
    other = await enabled_patient(api, staff.token, n=2)
    address = "Avery.Quinn1@Example.com"

    # then an email-address username is not valid for staff, whichever patient is named:
    # the answer must not depend on whether the address is anyone's username
    for patient_id in (None, pid, other, "999999", "abc"):
        check = await username_available(api, staff.token, address, patient_id)
        assert (check["valid"], check["available"]) == (False, False), patient_id
        assert "email address" in check["reason"]


async def test_email_username_of_another_practices_patient_is_not_valid(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    theirs = await enabled_patient(api, other_staff.token, n=1)
    check = await username_available(api, staff.token, "avery.quinn1@example.com", theirs)
    assert check["valid"] is False


async def test_username_available_needs_staff(api: Api) -> None:
    result = await api.gql(USERNAME_AVAILABLE, {"u": "free.name"})
    assert result["data"] is None
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
