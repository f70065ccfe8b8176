"""tokenInfo and redeemToken (SPEC section 3 "Link tokens", 4, 7.1, 7.7): the emailed link
opened, once, before it expires, with the date of birth asked where the risk is higher."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine

from core.clock import utcnow
from models import LinkToken, PortalAccount
from tests.conftest import Api, Mailbox, Staff, body_text, token_from
from tests.helpers import (
    LOGIN,
    PATIENT,
    STRONG_PASSWORD,
    enabled_patient,
    invite,
    pk,
)

EMAIL = "avery.quinn1@example.com"
DOB = "1980-04-12"
NEW_PASSWORD = "copper-lantern-meadow-17"

TOKEN_INFO = """
query($token: String!) {
  tokenInfo(token: $token) {
    valid error usernameRequired username expiresAt dateOfBirthRequired
  }
}"""

REDEEM = """
mutation($input: RedeemTokenInput!) {
  redeemToken(input: $input) { account { username } userErrors { field code message } }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username mustChangePassword } userErrors { field code } }
}"""

CHANGE_PASSWORD = """
mutation($input: ChangePasswordInput!) {
  changePassword(input: $input) { ok sessionToken userErrors { field code } }
}"""

UPDATE = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id email } userErrors { code } }
}"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Twenty concurrent redemptions and the checks around them come from one address.
    return {"rate_limit_token": "1000/minute", "rate_limit_login": "1000/minute"}


INVALID_INFO = {
    "valid": False,
    "usernameRequired": False,
    "username": None,
    "expiresAt": None,
    "dateOfBirthRequired": False,
}


async def token_info(api: Api, token: str) -> dict[str, Any]:
    result = await api.gql(TOKEN_INFO, {"token": token})
    assert "errors" not in result, result
    return result["data"]["tokenInfo"]


async def redeem(api: Api, **fields: Any) -> dict[str, Any]:
    result = await api.gql(REDEEM, {"input": fields})
    assert "errors" not in result, result
    payload = result["data"]["redeemToken"]
    for error in payload["userErrors"]:
        del error["message"]
    return payload


def failed(code: str, field: str) -> dict[str, Any]:
    return {"account": None, "userErrors": [{"field": [field], "code": code}]}


async def invited(api: Api, staff: Staff, mailbox: Mailbox, **chart: Any) -> tuple[str, str]:
    """An enabled patient with a fresh staff-sent link: (patient id, raw token)."""
    pid = await enabled_patient(api, staff.token, **chart)
    return pid, await fresh_link(api, staff, mailbox, pid, chart.get("email", EMAIL))


async def fresh_link(api: Api, staff: Staff, mailbox: Mailbox, pid: str, email: str) -> str:
    mailbox.clear()
    result = await invite(api, staff.token, pid, confirm=True)
    assert result["userErrors"] == []
    await api.deliver()
    [message] = [m for m in mailbox.to(email) if "#token=" in body_text(m)]
    return token_from(message)


async def active_account(api: Api, staff: Staff, mailbox: Mailbox) -> str:
    """A patient who set their own password through a link (ACTIVE)."""
    pid, token = await invited(api, staff, mailbox)
    result = await redeem(api, token=token, username="avery.q", password=STRONG_PASSWORD)
    assert result["userErrors"] == []
    await api.deliver()
    return pid


# --- first-time set-up ---------------------------------------------------------------


async def test_first_time_set_up_creates_the_account(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid, token = await invited(api, staff, mailbox)

    info = await token_info(api, token)
    assert info["valid"] is True
    assert info["error"] is None
    assert info["usernameRequired"] is True
    assert info["username"] is None
    assert info["dateOfBirthRequired"] is False
    expires = datetime.fromisoformat(info["expiresAt"])
    assert timedelta(hours=23, minutes=58) < expires - utcnow() <= timedelta(hours=24)

    result = await redeem(api, token=token, username="Avery.Q", password=STRONG_PASSWORD)

    assert result == {"account": {"username": "Avery.Q"}, "userErrors": []}
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert patient["portalStatus"] == "ACTIVE"
    assert patient["account"]["username"] == "Avery.Q"
    assert patient["account"]["mustChangePassword"] is False
    assert patient["lastInvitation"]["usedAt"] is not None
    login = await api.gql(LOGIN, {"u": "avery.q", "p": STRONG_PASSWORD})
    assert login["data"]["login"]["userErrors"] == []


async def test_first_time_set_up_requires_a_username(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    _, token = await invited(api, staff, mailbox)

    assert await redeem(api, token=token, password=STRONG_PASSWORD) == failed(
        "USERNAME_INVALID", "username"
    )
    assert await redeem(api, token=token, username="", password=STRONG_PASSWORD) == failed(
        "USERNAME_INVALID", "username"
    )

    assert (await token_info(api, token))["valid"] is True
    assert await PortalAccount.all().count() == 0


async def test_account_created_by_staff_without_password_keeps_its_username(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given staff typed a username but no password, then sent the link
    pid = await enabled_patient(api, staff.token)
    created = await api.gql(
        SET_CREDENTIALS, {"input": {"patientId": pid, "username": "avery.staff"}}, staff.token
    )
    assert created["data"]["setCredentials"]["userErrors"] == []
    token = await fresh_link(api, staff, mailbox, pid, EMAIL)

    info = await token_info(api, token)
    assert (info["usernameRequired"], info["username"]) == (False, "avery.staff")

    result = await redeem(api, token=token, username="ignored.name", password=STRONG_PASSWORD)
    assert result == {"account": {"username": "avery.staff"}, "userErrors": []}


# --- reset of an active account ------------------------------------------------------


async def test_reset_of_an_active_account(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given a patient with an account in use
    pid = await active_account(api, staff, mailbox)
    token = await fresh_link(api, staff, mailbox, pid, EMAIL)

    # then the link shows the username, asks for none, and asks for the date of birth
    info = await token_info(api, token)
    assert info["valid"] is True
    assert info["usernameRequired"] is False
    assert info["username"] == "avery.q"
    assert info["dateOfBirthRequired"] is True

    # when the patient resets without a username
    result = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth=DOB)

    # then the password changed, the username did not
    assert result == {"account": {"username": "avery.q"}, "userErrors": []}
    old = await api.gql(LOGIN, {"u": "avery.q", "p": STRONG_PASSWORD})
    assert old["data"]["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    new = await api.gql(LOGIN, {"u": "avery.q", "p": NEW_PASSWORD})
    assert new["data"]["login"]["userErrors"] == []


# --- tokenInfo / reuse / expiry ------------------------------------------------------


async def test_token_info_for_unknown_tokens(api: Api) -> None:
    for token in ("", "not-a-token", "A" * 43, "x" * 500):
        assert await token_info(api, token) == {**INVALID_INFO, "error": "TOKEN_INVALID"}


async def test_used_token_answers_token_used(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    _, token = await invited(api, staff, mailbox)
    assert (await redeem(api, token=token, username="avery.q", password=STRONG_PASSWORD))[
        "userErrors"
    ] == []

    assert await token_info(api, token) == {**INVALID_INFO, "error": "TOKEN_USED"}
    again = await redeem(api, token=token, username="avery.q2", password=NEW_PASSWORD)
    assert again == failed("TOKEN_USED", "token")
    # the first password still works: the reuse changed nothing
    login = await api.gql(LOGIN, {"u": "avery.q", "p": STRONG_PASSWORD})
    assert login["data"]["login"]["userErrors"] == []


async def test_expired_token_answers_token_expired(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid, token = await invited(api, staff, mailbox)

    with time_machine.travel(utcnow() + timedelta(hours=24, seconds=1), tick=False):
        assert await token_info(api, token) == {**INVALID_INFO, "error": "TOKEN_EXPIRED"}
        result = await redeem(api, token=token, username="avery.q", password=STRONG_PASSWORD)
        assert result == failed("TOKEN_EXPIRED", "token")

    assert await PortalAccount.all().count() == 0
    status = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert status["portalStatus"] == "INVITED"  # back in the present


@pytest.mark.parametrize("settings_overrides", [{"staff_link_ttl_minutes": 90}])
async def test_staff_link_ttl_is_configurable(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    _, token = await invited(api, staff, mailbox)

    with time_machine.travel(utcnow() + timedelta(minutes=91), tick=False):
        assert (await token_info(api, token))["error"] == "TOKEN_EXPIRED"


# --- validation failures leave the token usable --------------------------------------


async def test_invalid_username_leaves_the_token_usable(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    _, token = await invited(api, staff, mailbox)

    for bad in ("ab", "-starts-with-dash", "has space", "someone.else@example.com", "x" * 65):
        result = await redeem(api, token=token, username=bad, password=STRONG_PASSWORD)
        assert result == failed("USERNAME_INVALID", "username"), bad

    assert (await token_info(api, token))["valid"] is True
    assert (await redeem(api, token=token, username="avery.q", password=STRONG_PASSWORD))[
        "userErrors"
    ] == []


async def test_own_email_is_an_acceptable_username(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    _, token = await invited(api, staff, mailbox)

    result = await redeem(api, token=token, username=EMAIL.upper(), password=STRONG_PASSWORD)

    assert result == {"account": {"username": EMAIL.upper()}, "userErrors": []}


async def test_taken_username_leaves_the_token_usable(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given another patient holds the username
    other = await enabled_patient(api, staff.token, n=2)
    taken = await api.gql(
        SET_CREDENTIALS, {"input": {"patientId": other, "username": "avery.q"}}, staff.token
    )
    assert taken["data"]["setCredentials"]["userErrors"] == []
    _, token = await invited(api, staff, mailbox)

    # when the patient picks it, in another case
    result = await redeem(api, token=token, username="AVERY.Q", password=STRONG_PASSWORD)

    # then it is taken, and the link still works with another name
    assert result == failed("USERNAME_TAKEN", "username")
    assert (await token_info(api, token))["valid"] is True
    assert await LinkToken.filter(used_at__isnull=False).count() == 0
    ok = await redeem(api, token=token, username="avery.q1", password=STRONG_PASSWORD)
    assert ok == {"account": {"username": "avery.q1"}, "userErrors": []}


async def test_weak_password_leaves_the_token_usable(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    _, token = await invited(api, staff, mailbox)

    weak = [
        "short",
        "password1234",
        "aaaaaaaaaaaaaaaa",
        "avery.q.longname",
        f"x{EMAIL}x",
        "p" * 129,
    ]
    for password in weak:
        username = "avery.q.longname" if password == "avery.q.longname" else "avery.q"
        result = await redeem(api, token=token, username=username, password=password)
        assert result == failed("PASSWORD_TOO_WEAK", "password"), password

    assert (await token_info(api, token))["valid"] is True
    assert (await redeem(api, token=token, username="avery.q", password=STRONG_PASSWORD))[
        "userErrors"
    ] == []


async def test_every_bad_field_is_reported_at_once(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    _, token = await invited(api, staff, mailbox)

    result = await redeem(api, token=token, username="a b", password="short")

    assert result == {
        "account": None,
        "userErrors": [
            {"field": ["username"], "code": "USERNAME_INVALID"},
            {"field": ["password"], "code": "PASSWORD_TOO_WEAK"},
        ],
    }
    assert (await token_info(api, token))["valid"] is True


# --- single use under concurrency ----------------------------------------------------


async def test_twenty_concurrent_redemptions_exactly_one_succeeds(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid, token = await invited(api, staff, mailbox)

    results = await asyncio.gather(
        *(
            redeem(api, token=token, username=f"racer{i}", password=f"{STRONG_PASSWORD}-{i}")
            for i in range(20)
        )
    )

    winners = [r for r in results if r["userErrors"] == []]
    losers = [r for r in results if r["userErrors"] != []]
    assert len(winners) == 1
    assert len(losers) == 19
    assert all(r == failed("TOKEN_USED", "token") for r in losers)
    [account] = await PortalAccount.filter(patient_id=pk(pid))
    assert account.username == winners[0]["account"]["username"]
    winner = int(account.username.removeprefix("racer"))
    login = await api.gql(LOGIN, {"u": account.username, "p": f"{STRONG_PASSWORD}-{winner}"})
    assert login["data"]["login"]["userErrors"] == []
    assert await LinkToken.filter(used_at__isnull=False).count() == 1


# --- side effects of a redemption -----------------------------------------------------


async def test_redemption_clears_lock_out_and_revokes_sessions(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given an active patient signed in on one device and then locked out
    pid = await active_account(api, staff, mailbox)
    login = await api.gql(LOGIN, {"u": "avery.q", "p": STRONG_PASSWORD})
    session = login["data"]["login"]["sessionToken"]
    for _ in range(api.settings.lockout_threshold):
        await api.gql(LOGIN, {"u": "avery.q", "p": "wrong-password-entirely"})
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert patient["account"]["locked"] is True

    # when the patient resets the password through a link
    token = await fresh_link(api, staff, mailbox, pid, EMAIL)
    result = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth=DOB)
    assert result["userErrors"] == []

    # then the lock-out is gone and the new password works at once
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert patient["account"]["locked"] is False
    new_login = await api.gql(LOGIN, {"u": "avery.q", "p": NEW_PASSWORD})
    assert new_login["data"]["login"]["userErrors"] == []
    # and the earlier session is signed out
    stale = await api.gql(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": NEW_PASSWORD, "newPassword": "another-fine-passphrase"}},
        session,
    )
    assert stale["data"] is None
    assert [e["extensions"]["code"] for e in stale["errors"]] == ["UNAUTHENTICATED"]


async def test_notice_email_after_redemption(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    _, token = await invited(api, staff, mailbox)
    mailbox.clear()

    result = await redeem(api, token=token, username="avery.q", password=STRONG_PASSWORD)
    assert result["userErrors"] == []
    await api.deliver()

    [notice] = mailbox.to(EMAIL)
    # a first set-up is a welcome, not "your password was changed" (SPEC 9.4)
    assert notice["Subject"] == "Your Maple Street Clinic patient portal account is ready"
    text = body_text(notice)
    assert "Your Maple Street Clinic patient portal account was set up on" in text
    assert "password was changed" not in text
    assert "If this wasn't you, call Maple Street Clinic" in text
    assert STRONG_PASSWORD not in notice.as_string()
    assert "#token=" not in text


# --- date of birth (SPEC 7.1) ---------------------------------------------------------


async def test_wrong_or_missing_date_of_birth_is_refused(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_account(api, staff, mailbox)
    token = await fresh_link(api, staff, mailbox, pid, EMAIL)
    assert (await token_info(api, token))["dateOfBirthRequired"] is True

    missing = await redeem(api, token=token, password=NEW_PASSWORD)
    wrong = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth="1980-12-04")

    assert missing == failed("DATE_OF_BIRTH_MISMATCH", "dateOfBirth")
    assert wrong == failed("DATE_OF_BIRTH_MISMATCH", "dateOfBirth")
    assert (await token_info(api, token))["valid"] is True
    ok = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth=DOB)
    assert ok == {"account": {"username": "avery.q"}, "userErrors": []}


async def test_five_wrong_dates_of_birth_revoke_the_link(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_account(api, staff, mailbox)
    token = await fresh_link(api, staff, mailbox, pid, EMAIL)

    for attempt in range(4):
        result = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth="1999-01-01")
        assert result == failed("DATE_OF_BIRTH_MISMATCH", "dateOfBirth"), attempt
        assert (await token_info(api, token))["valid"] is True
    fifth = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth="1999-01-01")
    assert fifth == failed("DATE_OF_BIRTH_MISMATCH", "dateOfBirth")

    assert await token_info(api, token) == {**INVALID_INFO, "error": "TOKEN_INVALID"}
    right = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth=DOB)
    assert right == failed("TOKEN_INVALID", "token")
    login = await api.gql(LOGIN, {"u": "avery.q", "p": STRONG_PASSWORD})
    assert login["data"]["login"]["userErrors"] == []


async def test_concurrent_wrong_dates_of_birth_still_revoke_after_five(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a reset link that asks for the date of birth
    pid = await active_account(api, staff, mailbox)
    token = await fresh_link(api, staff, mailbox, pid, EMAIL)

    # when ten wrong guesses arrive at once
    results = await asyncio.gather(
        *(
            redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth=f"1990-01-{day:02d}")
            for day in range(1, 11)
        )
    )

    # then the first five are counted as wrong dates and revoke the link; the rest find
    # it revoked and answer as for any dead link
    limit = api.settings.redeem_dob_max_failures
    mismatch, invalid = failed("DATE_OF_BIRTH_MISMATCH", "dateOfBirth"), failed("TOKEN_INVALID", "token")
    assert [r for r in results if r == mismatch] == [mismatch] * limit
    assert [r for r in results if r == invalid] == [invalid] * (10 - limit)
    assert await token_info(api, token) == {**INVALID_INFO, "error": "TOKEN_INVALID"}
    right = await redeem(api, token=token, password=NEW_PASSWORD, dateOfBirth=DOB)
    assert right == failed("TOKEN_INVALID", "token")


async def test_date_of_birth_asked_for_a_shared_address(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    family = "family@example.com"
    await enabled_patient(api, staff.token, n=2, email=family)
    _, token = await invited(api, staff, mailbox, email=family)

    assert (await token_info(api, token))["dateOfBirthRequired"] is True
    result = await redeem(api, token=token, username="avery.q", password=STRONG_PASSWORD)
    assert result == failed("DATE_OF_BIRTH_MISMATCH", "dateOfBirth")


async def test_date_of_birth_asked_after_a_recent_email_change(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    changed = await api.gql(
        UPDATE, {"input": {"id": pid, "email": "moved@example.com"}}, staff.token
    )
    assert changed["data"]["updatePatient"]["userErrors"] == []
    token = await fresh_link(api, staff, mailbox, pid, "moved@example.com")

    assert (await token_info(api, token))["dateOfBirthRequired"] is True

    # thirty days later the change is no longer recent
    with time_machine.travel(utcnow() + timedelta(days=31), tick=False):
        later = await fresh_link(api, staff, mailbox, pid, "moved@example.com")
        assert (await token_info(api, later))["dateOfBirthRequired"] is False


@pytest.mark.parametrize("settings_overrides", [{"redeem_dob": "never"}])
async def test_date_of_birth_policy_never(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await active_account(api, staff, mailbox)
    token = await fresh_link(api, staff, mailbox, pid, EMAIL)

    assert (await token_info(api, token))["dateOfBirthRequired"] is False
    assert (await redeem(api, token=token, password=NEW_PASSWORD))["userErrors"] == []


@pytest.mark.parametrize("settings_overrides", [{"redeem_dob": "always"}])
async def test_date_of_birth_policy_always(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    _, token = await invited(api, staff, mailbox)

    assert (await token_info(api, token))["dateOfBirthRequired"] is True
    result = await redeem(
        api, token=token, username="avery.q", password=STRONG_PASSWORD, dateOfBirth=DOB
    )
    assert result["userErrors"] == []


async def test_login_session_token_is_not_a_link_token(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await active_account(api, staff, mailbox)
    login = await api.gql(LOGIN, {"u": "avery.q", "p": STRONG_PASSWORD})
    session = login["data"]["login"]["sessionToken"]

    assert (await token_info(api, session))["error"] == "TOKEN_INVALID"
