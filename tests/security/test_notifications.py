"""SECURITY.md section NOTIF: notices of credential changes, staff-set passwords, email
as a weak authenticator."""

from __future__ import annotations

from email.message import Message
from typing import Any

import pytest

from tests.conftest import Api, Mailbox, Staff, body_text, token_from
from tests.helpers import PATIENT, STRONG_PASSWORD, enabled_patient, invite
from tests.security.support import (
    CHANGE_PASSWORD,
    SET_CREDENTIALS,
    UPDATE_PATIENT,
    active_patient,
    login,
    redeem,
)

NEW_PASSWORD = "a-brand-new-passphrase-9"
STAFF_PASSWORD = "temporary-passphrase-31"


def full_text(message: Message) -> str:
    parts = [str(message.get("Subject"))]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_payload(decode=True).decode())
    return "\n".join(parts)


def assert_harmless_notice(message: Message, *secrets: str) -> None:
    text = full_text(message)
    assert "#token=" not in text and "http" not in body_text(message)
    for secret in secrets:
        assert secret not in text


async def _reset_by_link(api: Api, staff: Staff, mailbox: Mailbox, pid: str) -> list[str]:
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[-1])
    mailbox.clear()
    assert (await redeem(api, token, None, NEW_PASSWORD, "1980-04-12"))["userErrors"] == []
    return [token, NEW_PASSWORD]


async def _change_password(api: Api, staff: Staff, mailbox: Mailbox, pid: str) -> list[str]:
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    result = await api.gql(CHANGE_PASSWORD, {"c": STRONG_PASSWORD, "n": NEW_PASSWORD}, session)
    assert result["data"]["changePassword"]["ok"] is True
    return [NEW_PASSWORD, STRONG_PASSWORD, session]


async def _staff_sets_password(api: Api, staff: Staff, mailbox: Mailbox, pid: str) -> list[str]:
    result = await api.gql(SET_CREDENTIALS, {"pid": pid, "u": "patient1", "p": STAFF_PASSWORD}, staff.token)
    assert result["data"]["setCredentials"]["userErrors"] == []
    return [STAFF_PASSWORD]


@pytest.mark.parametrize(
    "change",
    [_reset_by_link, _change_password, _staff_sets_password],
    ids=lambda f: f.__name__.strip("_"),
)
async def test_patient_is_told_of_password_changes(
    api: Api, staff: Staff, mailbox: Mailbox, change: Any
) -> None:
    """NOTIF-1: after a link reset, a password change and a staff-set password the patient
    gets a notice at the address on file, with no password, token or link in it."""
    pid = await active_patient(api, staff.token, mailbox)
    secrets = await change(api, staff, mailbox, pid)
    await api.deliver()
    [notice] = mailbox.to("avery.quinn1@example.com")
    # each moment has its own words (SPEC 9.4): staff-set is not "you changed it"
    expected = {
        _reset_by_link: "Your Maple Street Clinic patient portal password was changed",
        _change_password: "Your Maple Street Clinic patient portal password was changed",
        _staff_sets_password: "Your clinic set a password for your Maple Street Clinic patient portal",
    }[change]
    assert str(notice["Subject"]) == expected
    assert_harmless_notice(notice, *secrets)


async def test_old_address_is_told_of_an_email_change(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """NOTIF-1: when the address of record of a patient with a portal account changes, the
    previous address gets a notice that does not reveal the new address."""
    pid = await active_patient(api, staff.token, mailbox)
    result = await api.gql(
        UPDATE_PATIENT, {"input": {"id": pid, "email": "someone.else@example.org"}}, staff.token
    )
    assert result["data"]["updatePatient"]["userErrors"] == []
    await api.deliver()
    [notice] = mailbox.to("avery.quinn1@example.com")
    assert "email address" in str(notice["Subject"]).lower()
    assert_harmless_notice(notice, "someone.else", "example.org")
    assert mailbox.to("someone.else@example.org") == []

    # a chart without a portal account, or a change of letter case, sends nothing
    other = await enabled_patient(api, staff.token, n=2)
    await api.gql(UPDATE_PATIENT, {"input": {"id": other, "email": "new2@example.com"}}, staff.token)
    await api.gql(UPDATE_PATIENT, {"input": {"id": pid, "email": "SOMEONE.ELSE@example.org"}}, staff.token)
    await api.deliver()
    assert len(mailbox.messages) == 1


async def test_staff_set_password_must_be_changed(api: Api, staff: Staff) -> None:
    """NOTIF-2: a staff-typed password always sets mustChangePassword; logging in with it
    grants only a forced change, after which the patient's own password is in force and
    staff no longer see mustChangePassword."""
    pid = await enabled_patient(api, staff.token)
    result = await api.gql(SET_CREDENTIALS, {"pid": pid, "u": "patient1", "p": STAFF_PASSWORD}, staff.token)
    assert result["data"]["setCredentials"]["account"] == {"username": "patient1", "mustChangePassword": True}
    first = await login(api, "patient1", STAFF_PASSWORD)
    assert first["mustChangePassword"] is True
    changed = await api.gql(
        CHANGE_PASSWORD, {"c": STAFF_PASSWORD, "n": NEW_PASSWORD}, first["sessionToken"]
    )
    assert changed["data"]["changePassword"]["ok"] is True
    assert (await login(api, "patient1", STAFF_PASSWORD))["sessionToken"] is None
    assert (await login(api, "patient1", NEW_PASSWORD))["mustChangePassword"] is False
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert patient["account"]["mustChangePassword"] is False


async def test_staff_cannot_read_or_choose_a_password_silently(api: Api, staff: Staff) -> None:
    """NOTIF-2: no staff-facing type exposes a password or hash; the only way staff set one
    is setCredentials, which forces a change (covered above)."""
    for type_name in ("Patient", "PortalAccount", "SetCredentialsPayload"):
        fields = await api.gql('query($n: String!) { __type(name: $n) { fields { name } } }', {"n": type_name})
        names = {f["name"].lower() for f in fields["data"]["__type"]["fields"]}
        assert not any("password" in n and n != "mustchangepassword" for n in names), names
        assert not any("hash" in n for n in names), names


async def test_email_link_risk_is_bounded(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """NOTIF-3: the emailed link is the residual weak authenticator; it is bounded by a
    short lifetime (<= 24 h), the address on file only, single use, and, for an active
    account being reset, a date-of-birth check (SPEC 7.1)."""
    assert api.settings.staff_link_ttl_minutes <= 24 * 60
    assert api.settings.self_service_link_ttl_minutes <= 60
    pid = await active_patient(api, staff.token, mailbox)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[-1])
    info = await api.gql("query($t: String!) { tokenInfo(token: $t) { dateOfBirthRequired } }", {"t": token})
    assert info["data"]["tokenInfo"]["dateOfBirthRequired"] is True
    refused = await redeem(api, token, None, NEW_PASSWORD)
    assert [e["code"] for e in refused["userErrors"]] == ["DATE_OF_BIRTH_MISMATCH"]
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
