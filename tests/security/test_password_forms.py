"""Issue 10 item 7: passwords are NFKC-normalised before hashing and verification (NIST
SP 800-63B 5.1.1.2, SECURITY PWD-3), hashes stored before that keep working, and a
password built from the username or the email's local part is refused (PWD-5).

Through the real HTTP API, on SQLite and PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import unicodedata

from passlib.hash import argon2

import core.passwords
from core.passwords import normalize, pwd_context
from tests.concurrency.pause import paused_at
from tests.conftest import Api, Mailbox, Staff
from tests.helpers import STRONG_PASSWORD, enabled_patient
from tests.security.support import (
    CHANGE_PASSWORD,
    SET_CREDENTIALS,
    active_patient,
    codes,
    execute,
    invited,
    login,
    redeem,
    table_rows,
)

# One password, two ways a keyboard can send it: "é", "û" and "ï" as single code points
# (NFC, what most keyboards send) or as a letter plus a combining mark (NFD, what macOS
# file names and some Android keyboards send).
COMPOSED = unicodedata.normalize("NFC", "crème brûlée naïve café")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)
# Full-width letters (an East Asian input method in full-width mode) and their ASCII twin.
ASCII = "Violet Harbor Tuesday"
FULL_WIDTH = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" for c in ASCII)


def test_the_two_forms_differ_as_typed_and_agree_once_normalised() -> None:
    """The premise of every test below: without normalisation these are different strings."""
    assert COMPOSED != DECOMPOSED and len(DECOMPOSED) > len(COMPOSED)
    assert FULL_WIDTH != ASCII and FULL_WIDTH[0] == "Ｖ"
    assert normalize(DECOMPOSED) == normalize(COMPOSED) == COMPOSED
    assert normalize(FULL_WIDTH) == ASCII


async def stored_hash(username: str) -> str:
    rows = [r for r in await table_rows("portal_account") if r["username"] == username]
    return str(rows[0]["password_hash"])


async def change(api: Api, session: str, current: str, new: str) -> dict:  # type: ignore[type-arg]
    result = await api.gql(CHANGE_PASSWORD, {"c": current, "n": new}, session)
    return result["data"]["changePassword"]  # type: ignore[no-any-return]


async def set_credentials(
    api: Api, staff: Staff, pid: str, username: str, password: str | None
) -> dict:  # type: ignore[type-arg]
    result = await api.gql(SET_CREDENTIALS, {"pid": pid, "u": username, "p": password}, staff.token)
    return result["data"]["setCredentials"]  # type: ignore[no-any-return]


# --- NFKC on every path that sets or checks a password -------------------------------


async def test_redeem_composed_then_login_decomposed(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await active_patient(api, staff.token, mailbox, password=COMPOSED)
    assert (await login(api, "patient1", DECOMPOSED))["sessionToken"]
    assert (await login(api, "patient1", COMPOSED))["sessionToken"]
    assert pwd_context.verify(COMPOSED, await stored_hash("patient1"))
    # Normalisation is not case folding or trimming (PWD-3 still holds).
    assert (await login(api, "patient1", COMPOSED.upper()))["sessionToken"] is None


async def test_redeem_full_width_then_login_ascii(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    await active_patient(api, staff.token, mailbox, password=FULL_WIDTH)
    assert (await login(api, "patient1", ASCII))["sessionToken"]
    assert (await login(api, "patient1", FULL_WIDTH))["sessionToken"]


async def test_set_credentials_and_change_password_normalise(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    assert (await set_credentials(api, staff, pid, "jordan.k", DECOMPOSED))["userErrors"] == []
    first = await login(api, "jordan.k", COMPOSED)
    assert first["sessionToken"] and first["mustChangePassword"] is True

    # changePassword checks the current password in another form, and a "new" password
    # that is the current one in another form is the same password.
    same = await change(api, first["sessionToken"], COMPOSED, DECOMPOSED)
    assert same["ok"] is False and codes(same) == ["PASSWORD_TOO_WEAK"]
    changed = await change(api, first["sessionToken"], DECOMPOSED, FULL_WIDTH)
    assert changed["ok"] is True, changed
    assert (await login(api, "jordan.k", ASCII))["sessionToken"]
    assert (await login(api, "jordan.k", COMPOSED))["sessionToken"] is None


async def test_rules_judge_the_normalised_form(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """ "ｐａｓｓｗｏｒｄ１２３４" is "password1234": refused as common."""
    _, token = await invited(api, staff.token, mailbox)
    full_width_common = "".join(chr(ord(c) + 0xFEE0) for c in "password1234")
    refused = await redeem(api, token, "avery.q", full_width_common)
    assert codes(refused) == ["PASSWORD_TOO_WEAK"]


# --- hashes stored before normalisation ----------------------------------------------


async def test_a_hash_of_the_raw_form_still_logs_in_and_is_replaced(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """Before this change the raw (here decomposed) form was hashed. That form still logs
    in; the first success replaces the hash with one of the NFKC form, after which either
    form logs in. Until then the other form does not (it was never the password)."""
    await active_patient(api, staff.token, mailbox)
    legacy = pwd_context.hash(DECOMPOSED)
    await execute("UPDATE portal_account SET password_hash = ?", legacy)

    assert (await login(api, "patient1", COMPOSED))["sessionToken"] is None
    assert await stored_hash("patient1") == legacy  # a failed login changes nothing
    assert (await login(api, "patient1", DECOMPOSED))["sessionToken"]
    upgraded = await stored_hash("patient1")
    assert upgraded != legacy and pwd_context.verify(COMPOSED, upgraded)
    assert (await login(api, "patient1", COMPOSED))["sessionToken"]


async def test_an_old_raw_hash_with_old_parameters_is_upgraded_once(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """Both reasons to rehash at once (weaker argon2 parameters, raw form): one new hash
    at current parameters of the normalised form."""
    await active_patient(api, staff.token, mailbox)
    old = argon2.using(type="ID", memory_cost=8192, rounds=2, parallelism=1).hash(FULL_WIDTH)
    await execute("UPDATE portal_account SET password_hash = ?", old)
    assert (await login(api, "patient1", FULL_WIDTH))["sessionToken"]
    upgraded = await stored_hash("patient1")
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert pwd_context.verify(ASCII, upgraded)


async def test_the_normalised_rehash_never_overwrites_a_password_set_meanwhile(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """Check-then-apply: the login verified the raw form of an old hash and holds its
    normalised rehash; staff set a new password before it commits. The login loses and
    the staff password stays (unit_of_work: the rehash lands only on the hash it read)."""
    pid = await active_patient(api, staff.token, mailbox)
    await execute("UPDATE portal_account SET password_hash = ?", pwd_context.hash(DECOMPOSED))

    async with paused_at("login.verified", hold=1) as pause:
        racing = asyncio.create_task(login(api, "patient1", DECOMPOSED))
        await pause.reached()
        staff_set = await set_credentials(api, staff, pid, "patient1", "kettle-maple-sunrise-77")
        assert staff_set["userErrors"] == []
        pause.release()
        result = await racing

    assert result["sessionToken"] is None
    stored = await stored_hash("patient1")
    assert pwd_context.verify("kettle-maple-sunrise-77", stored)
    assert not pwd_context.verify(COMPOSED, stored)


class CountingContext:
    """The real CryptContext, recording which argon2 operations ran."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        real = getattr(pwd_context, name)

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls.append(name)
            return real(*args, **kwargs)

        return counted


def test_a_second_form_costs_the_same_for_unknown_accounts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A password whose raw and NFKC forms differ costs two argon2 runs against a real
    account (normalised, then raw); an unknown account then runs two dummy ones, so the
    extra try says nothing about whether the username exists (ENUM-4)."""
    counting = CountingContext()
    monkeypatch.setattr(core.passwords, "pwd_context", counting)
    stored = pwd_context.hash("a-different-password-1")

    def runs(password: str, stored_hash: str | None) -> list[str]:
        counting.calls.clear()
        assert core.passwords._verify_and_update(password, stored_hash) == (False, None)
        return list(counting.calls)

    assert runs(DECOMPOSED, stored) == ["verify_and_update", "verify"]
    assert runs(DECOMPOSED, None) == ["dummy_verify", "dummy_verify"]
    assert runs(COMPOSED, stored) == ["verify_and_update"]
    assert runs(COMPOSED, None) == ["dummy_verify"]


# --- the username (or the email's local part) with a few characters changed ----------


async def test_redeem_refuses_the_new_username_with_characters_added(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    _, token = await invited(api, staff.token, mailbox, email="kim.north@example.com")
    for password in (
        "averyquinnxyz",
        "Avery_Quinn_99!",
        "averyquin!!!!",
        "ＡｖｅｒｙＱｕｉｎｎ２０２４",
    ):
        refused = await redeem(api, token, "averyquinn", password)
        assert codes(refused) == ["PASSWORD_TOO_WEAK"], password
        assert refused["userErrors"][0]["field"] == ["password"]
    # Far enough from the username, and the same password is fine with another username:
    # the rule compared the username chosen in this very request.
    assert (await redeem(api, token, "averyquinn", "avery harbor lantern"))["userErrors"] == []


async def test_redeem_refuses_the_email_local_part_with_characters_added(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """The invited patient's address is avery.quinn1@example.com."""
    _, token = await invited(api, staff.token, mailbox)
    refused = await redeem(api, token, "patient1", "Avery.Quinn1-xyz")
    assert codes(refused) == ["PASSWORD_TOO_WEAK"]
    result = await api.gql(
        "mutation($i: RedeemTokenInput!) { redeemToken(input: $i) { userErrors { message } } }",
        {"i": {"token": token, "username": "patient1", "password": "averyquinn-1234"}},
    )
    assert (
        "built from the username, the email address"
        in (result["data"]["redeemToken"]["userErrors"][0]["message"])
    )


async def test_set_credentials_compares_with_the_username_typed_in_the_same_request(
    api: Api, staff: Staff
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    refused = await set_credentials(api, staff, pid, "jordan.lee", "Jordan-Lee-2024x")
    assert codes(refused) == ["PASSWORD_TOO_WEAK"] and refused["account"] is None
    refused = await set_credentials(api, staff, pid, "jordan.lee", "jordanleee!!")
    assert codes(refused) == ["PASSWORD_TOO_WEAK"]
    accepted = await set_credentials(api, staff, pid, "patient.k7", "Jordan-Lee-2024x")
    assert accepted["userErrors"] == [] and accepted["account"]["username"] == "patient.k7"


async def test_change_password_refuses_the_username_with_characters_added(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await active_patient(api, staff.token, mailbox, username="harbor.pilot")
    session = (await login(api, "harbor.pilot", STRONG_PASSWORD))["sessionToken"]
    refused = await change(api, session, STRONG_PASSWORD, "HarborPilot!2026")
    assert refused["ok"] is False and codes(refused) == ["PASSWORD_TOO_WEAK"]
    assert refused["userErrors"][0]["field"] == ["newPassword"]
