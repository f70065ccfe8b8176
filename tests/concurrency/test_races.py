"""Issue 9: no race lets an attacker keep, reach or probe an account.

Each test holds one request at the dangerous point (a checkpoint after its slow work,
before its write is decided: onboarding/checkpoints.py) while another change commits,
then lets it go. The rules are decided under the patient's lock on what it reads there
(onboarding/unit_of_work.py), so the held request must lose. Runs on SQLite and
PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from limits import parse

from core.clock import utcnow
from graph.ids import patient_pk
from tests.concurrency.pause import paused_at
from tests.conftest import BACKEND, Api, Mailbox, Staff, token_from
from tests.helpers import PATIENT, REDEEM, STRONG_PASSWORD, enabled_patient, invite
from tests.security.support import (
    AUDIT,
    CHANGE_PASSWORD,
    DISABLE,
    SET_CREDENTIALS,
    UPDATE_PATIENT,
    scalar,
)

USERNAME = "avery.q"
DOB = "1980-04-12"
EMAIL = "avery.quinn1@example.com"
ATTACKER = "attacker-chosen-passphrase-1"
TEMPORARY = "kettle-maple-sunrise-77"
RESET = "lantern-orchard-velvet-9"

LOGIN = """
mutation($u: String!, $p: String!) {
  login(input: {username: $u, password: $p}) { sessionToken mustChangePassword userErrors { code } }
}"""
ME = "{ me { username mustChangePassword } }"
USERNAME_AVAILABLE_FOR = """
query($u: String!, $p: ID) { usernameAvailable(username: $u, patientId: $p) { valid available reason } }"""
SELF_RESET = """
mutation($input: IdentityInput!) { requestSelfReset(input: $input) { ok } }"""


async def login(api: Api, password: str, username: str = USERNAME) -> dict[str, Any]:
    return (await api.gql(LOGIN, {"u": username, "p": password}))["data"]["login"]


async def change(api: Api, session: str, current: str, new: str) -> dict[str, Any]:
    return await api.gql(CHANGE_PASSWORD, {"c": current, "n": new}, session)


async def status(api: Api, staff: Staff, pid: str) -> dict[str, Any]:
    return (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]


async def active_patient(api: Api, staff: Staff, mailbox: Mailbox) -> str:
    """A patient who chose USERNAME and STRONG_PASSWORD through an emailed link."""
    pid = await enabled_patient(api, staff.token, n=1)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    [message] = mailbox.to(EMAIL)
    result = await api.gql(
        REDEEM,
        {"input": {"token": token_from(message), "username": USERNAME, "password": STRONG_PASSWORD}},
    )
    assert result["data"]["redeemToken"]["userErrors"] == [], result
    await api.deliver()
    mailbox.clear()
    return pid


async def reset_link(api: Api, staff: Staff, mailbox: Mailbox, pid: str) -> str:
    mailbox.clear()
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    [message] = mailbox.to(EMAIL)
    mailbox.clear()
    return token_from(message)


async def redeem(api: Api, token: str, password: str, dob: str | None = DOB) -> dict[str, Any]:
    values: dict[str, Any] = {"token": token, "password": password}
    if dob:
        values["dateOfBirth"] = dob
    return (await api.gql(REDEEM, {"input": values}))["data"]["redeemToken"]


async def staff_sets(api: Api, staff: Staff, pid: str, password: str | None = TEMPORARY) -> None:
    result = await api.gql(
        SET_CREDENTIALS, {"pid": pid, "u": USERNAME, "p": password}, staff.token
    )
    assert result["data"]["setCredentials"]["userErrors"] == [], result


async def disable(api: Api, staff: Staff, pid: str) -> None:
    result = await api.gql(DISABLE, {"ids": [pid]}, staff.token)
    assert result["data"]["disablePortal"]["results"][0]["userErrors"] == []


async def update(api: Api, staff: Staff, pid: str, **fields: Any) -> None:
    result = await api.gql(UPDATE_PATIENT, {"input": {"id": pid, **fields}}, staff.token)
    assert result["data"]["updatePatient"]["userErrors"] == [], result


def refused(result: dict[str, Any]) -> bool:
    payload = result["data"]["changePassword"]
    return (
        payload["ok"] is False
        and payload["sessionToken"] is None
        and [e["code"] for e in payload["userErrors"]] == ["INVALID_CREDENTIALS"]
    )


def unauthenticated(result: dict[str, Any]) -> bool:
    return result.get("data") is None and result["errors"][0]["extensions"]["code"] == (
        "UNAUTHENTICATED"
    )


# --- 1. a password reset cannot be silently undone -----------------------------------


async def test_1_reset_by_staff_while_change_password_hashes_wins(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given an attacker holding the patient's password and a session
    pid = await active_patient(api, staff, mailbox)
    session = (await login(api, STRONG_PASSWORD))["sessionToken"]

    # when the attacker's password change is held after its hashing, and staff reset
    # the password meanwhile
    async with paused_at("change_password.hashed") as pause:
        attack = asyncio.create_task(change(api, session, STRONG_PASSWORD, ATTACKER))
        await pause.reached()
        await staff_sets(api, staff, pid)
        pause.release()
        result = await attack

    # then the reset stands: the attacker's change is refused, with no session
    assert refused(result)
    assert (await login(api, ATTACKER))["sessionToken"] is None
    after_reset = await login(api, TEMPORARY)
    assert after_reset["sessionToken"] and after_reset["mustChangePassword"] is True


async def test_1_reset_by_link_while_change_password_hashes_wins(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    token = await reset_link(api, staff, mailbox, pid)
    session = (await login(api, STRONG_PASSWORD))["sessionToken"]

    async with paused_at("change_password.hashed") as pause:
        attack = asyncio.create_task(change(api, session, STRONG_PASSWORD, ATTACKER))
        await pause.reached()
        assert (await redeem(api, token, RESET))["userErrors"] == []
        pause.release()
        result = await attack

    assert refused(result)
    assert (await login(api, ATTACKER))["sessionToken"] is None
    assert (await login(api, RESET))["mustChangePassword"] is False
    assert unauthenticated(await api.gql(ME, token=session))


# --- 2. sessions do not outlive what should end them ----------------------------------


ENDINGS = ["disabled", "chart_inactive", "staff_password", "link_reset", "password_changed"]


@pytest.mark.parametrize("ending", ENDINGS)
async def test_2_a_login_racing_the_end_of_access_opens_no_session(
    api: Api, staff: Staff, mailbox: Mailbox, ending: str
) -> None:
    # given an active patient (and, for the endings that need one, a reset link sent or
    # a second session open before the login starts)
    pid = await active_patient(api, staff, mailbox)
    link = await reset_link(api, staff, mailbox, pid) if ending == "link_reset" else None
    other = (await login(api, STRONG_PASSWORD))["sessionToken"]

    # when a login is held after its password was verified, and access ends meanwhile
    async with paused_at("login.verified", hold=1) as pause:
        racing = asyncio.create_task(login(api, STRONG_PASSWORD))
        await pause.reached()
        if ending == "disabled":
            await disable(api, staff, pid)
        elif ending == "chart_inactive":
            await update(api, staff, pid, chartStatus="INACTIVE")
        elif ending == "staff_password":
            await staff_sets(api, staff, pid)
        elif ending == "link_reset":
            assert link is not None
            assert (await redeem(api, link, RESET))["userErrors"] == []
        else:
            assert (await change(api, other, STRONG_PASSWORD, RESET))["data"]["changePassword"]["ok"]
        pause.release()
        result = await racing

    # then the racing login failed like a wrong password and left no session
    assert result["sessionToken"] is None
    assert [e["code"] for e in result["userErrors"]] == ["INVALID_CREDENTIALS"]
    assert await live_sessions(pid) == (1 if ending == "password_changed" else 0)


async def test_2_change_password_racing_a_disable_opens_no_session(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    session = (await login(api, STRONG_PASSWORD))["sessionToken"]

    async with paused_at("change_password.hashed") as pause:
        racing = asyncio.create_task(change(api, session, STRONG_PASSWORD, RESET))
        await pause.reached()
        await disable(api, staff, pid)
        pause.release()
        result = await racing

    assert refused(result)
    assert await live_sessions(pid) == 0
    assert unauthenticated(await change(api, session, STRONG_PASSWORD, RESET))


# --- 3. wrong dates of birth cannot be raced into an oracle ---------------------------


async def test_3_a_burst_of_date_guesses_is_decided_under_the_lock(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a reset link that asks for the date of birth
    pid = await active_patient(api, staff, mailbox)
    token = await reset_link(api, staff, mailbox, pid)
    limit = api.settings.redeem_dob_max_failures

    # when ten wrong guesses and then the right one have all found the link usable
    # before any of them is counted
    async with paused_at("redeem.link_found") as pause:
        wrong = [
            asyncio.create_task(redeem(api, token, RESET, dob=f"1990-01-{day:02d}"))
            for day in range(1, 11)
        ]
        await pause.reached(10)
        right = asyncio.create_task(redeem(api, token, RESET, dob=DOB))
        await pause.reached(11)
        pause.release()
        answers = [await t for t in wrong]
        right_answer = await right

    # then only the guesses counted before the decision say "mismatch"; every later one,
    # the right date included, finds the link revoked and answers like any dead link
    codes = [a["userErrors"][0]["code"] for a in answers]
    assert codes.count("DATE_OF_BIRTH_MISMATCH") == limit
    assert codes.count("TOKEN_INVALID") == 10 - limit
    assert [e["code"] for e in right_answer["userErrors"]] == ["TOKEN_INVALID"]
    assert (await login(api, RESET))["sessionToken"] is None


# --- 4. a link never goes to the previous address --------------------------------------


async def test_4_an_invitation_racing_an_email_change_goes_to_the_new_address(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    new = "avery.new@example.com"

    async with paused_at("invite.before_lock") as pause:
        sending = asyncio.create_task(invite(api, staff.token, pid))
        await pause.reached()
        await update(api, staff, pid, email=new)
        pause.release()
        result = await sending
    await api.deliver()

    assert result["userErrors"] == []
    assert result["invitation"]["sentTo"] == new
    assert mailbox.to(EMAIL) == []
    assert len(mailbox.to(new)) == 1
    assert (await status(api, staff, pid))["lastInvitation"]["sentTo"] == new


async def test_4_a_self_service_link_racing_an_email_change_is_not_sent(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)

    async with paused_at("self_reset.before_lock") as pause:
        answer = await api.gql(
            SELF_RESET,
            {
                "input": {
                    "email": EMAIL,
                    "lastName": "Quinn1",
                    "dateOfBirth": DOB,
                    "zipCode": "02139",
                }
            },
        )
        assert answer["data"]["requestSelfReset"]["ok"] is True
        await pause.reached()
        await update(api, staff, pid, email="avery.new@example.com")
        pause.release()
        await api.deliver()

    # the old address only hears that the address of record changed: no link
    assert all("#token=" not in str(m) for m in mailbox.to(EMAIL))
    assert mailbox.to("avery.new@example.com") == []


# --- 5. lock-out holds against a parallel burst ----------------------------------------


async def test_5_the_right_password_held_behind_a_lockout_stays_locked_out(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    threshold = api.settings.lockout_threshold

    async with paused_at("login.verified", hold=1) as pause:
        right = asyncio.create_task(login(api, STRONG_PASSWORD))
        await pause.reached()
        for _ in range(threshold):
            assert (await login(api, "not-the-password-at-all"))["sessionToken"] is None
        pause.release()
        result = await right

    assert result["sessionToken"] is None
    assert (await status(api, staff, pid))["account"]["locked"] is True
    actions = await audit_actions(api, staff, pid)
    assert "login.locked_out" in actions and "login.succeeded" not in actions


# --- 6. changePassword is no password oracle -------------------------------------------


async def test_6_change_password_counts_toward_lockout_and_obeys_it(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    session = (await login(api, STRONG_PASSWORD))["sessionToken"]

    for _ in range(api.settings.lockout_threshold):
        assert refused(await change(api, session, "not-the-password-at-all", RESET))
    assert (await status(api, staff, pid))["account"]["locked"] is True

    # while locked, the right current password is refused like a wrong one and the lock
    # stays
    assert refused(await change(api, session, STRONG_PASSWORD, RESET))
    assert (await status(api, staff, pid))["account"]["locked"] is True
    assert (await login(api, STRONG_PASSWORD))["sessionToken"] is None


async def test_6_change_password_is_rate_limited(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await active_patient(api, staff, mailbox)
    session = (await login(api, STRONG_PASSWORD))["sessionToken"]
    api.services.limiter.limits["login"] = parse("3/minute")
    api.settings.lockout_threshold = 100
    codes = []
    for _ in range(4):
        payload = (await change(api, session, "not-the-password-at-all", RESET))["data"]
        codes.append(payload["changePassword"]["userErrors"][0]["code"])
    assert codes[-1] == "RATE_LIMITED"


# --- 7. temporary passwords ------------------------------------------------------------


async def test_7_a_temporary_password_expires_for_a_patient_who_logged_in_before(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a patient who has logged in with their own password, then got one from staff
    pid = await active_patient(api, staff, mailbox)
    assert (await login(api, STRONG_PASSWORD))["sessionToken"]
    await staff_sets(api, staff, pid)

    # then the status says credentials were issued (not active) until they are used
    assert (await status(api, staff, pid))["portalStatus"] == "CREDENTIALS_ISSUED"

    # and unused past its lifetime the temporary password no longer works
    days = api.settings.temporary_password_ttl_days
    with time_machine.travel(utcnow() + timedelta(days=days, minutes=1), tick=False):
        assert (await login(api, TEMPORARY))["sessionToken"] is None
        assert (await status(api, staff, pid))["portalStatus"] != "CREDENTIALS_ISSUED"


async def test_7_a_must_change_session_can_only_change_the_password(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await active_patient(api, staff, mailbox)
    await staff_sets(api, staff, pid)
    first = await login(api, TEMPORARY)
    assert first["mustChangePassword"] is True
    assert (await status(api, staff, pid))["portalStatus"] == "ACTIVE"

    refused_me = await api.gql(ME, token=first["sessionToken"])
    assert refused_me["data"] is None
    assert refused_me["errors"][0]["extensions"]["code"] == "PASSWORD_CHANGE_REQUIRED"

    changed = (await change(api, first["sessionToken"], TEMPORARY, RESET))["data"]
    fresh = changed["changePassword"]["sessionToken"]
    me = await api.gql(ME, token=fresh)
    assert me["data"]["me"] == {"username": USERNAME, "mustChangePassword": False}


# --- 8. no cross-practice username oracle ----------------------------------------------


async def test_8_staff_learn_nothing_about_another_practices_usernames(
    api: Api, staff: Staff, other_staff: Staff, mailbox: Mailbox
) -> None:
    # given a patient of another practice whose username is their email address
    theirs = await enabled_patient(api, other_staff.token, n=1)
    assert (await invite(api, other_staff.token, theirs))["userErrors"] == []
    await api.deliver()
    result = await api.gql(
        REDEEM,
        {"input": {"token": token_from(mailbox.to(EMAIL)[-1]), "username": EMAIL,
                   "password": STRONG_PASSWORD}},
    )
    assert result["data"]["redeemToken"]["userErrors"] == []

    # when staff of this practice create a chart with that address and probe it
    probe = await enabled_patient(api, staff.token, n=1)
    unused = "nobody.here@example.com"

    async def check(username: str) -> Any:
        variables = {"u": username, "p": probe}
        return (await api.gql(USERNAME_AVAILABLE_FOR, variables, staff.token))["data"]

    async def set_to(username: str) -> Any:
        payload = await api.gql(
            SET_CREDENTIALS, {"pid": probe, "u": username, "p": None}, staff.token
        )
        return payload["data"]["setCredentials"]["userErrors"]

    # then the taken address and an unused one get the same answers
    assert await check(EMAIL) == await check(unused)
    assert (await check(EMAIL))["usernameAvailable"]["valid"] is False
    assert [e["code"] for e in await set_to(EMAIL)] == ["USERNAME_INVALID"]
    assert await set_to(EMAIL) == await set_to(unused)


async def test_8_set_credentials_is_rate_limited_per_staff_user(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    api.services.limiter.limits["set_credentials"] = parse("3/minute")
    pid = await enabled_patient(api, staff.token, n=1)
    answers = []
    for i in range(4):
        payload = await api.gql(
            SET_CREDENTIALS, {"pid": pid, "u": f"handle{i}", "p": None}, staff.token
        )
        answers.append([e["code"] for e in payload["data"]["setCredentials"]["userErrors"]])
    assert answers == [[], [], [], ["RATE_LIMITED"]]
    # another staff user has a budget of their own
    theirs = await enabled_patient(api, other_staff.token, n=2)
    payload = await api.gql(
        SET_CREDENTIALS, {"pid": theirs, "u": "handle9", "p": None}, other_staff.token
    )
    assert payload["data"]["setCredentials"]["userErrors"] == []


# --- 9. inactive and deceased charts ---------------------------------------------------


async def test_9_a_chart_made_inactive_or_deceased_loses_portal_access(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    for n, chart_status in ((1, "INACTIVE"), (2, "DECEASED")):
        pid, username, email = await _active(api, staff, mailbox, n)
        session = (await login(api, STRONG_PASSWORD, username))["sessionToken"]
        mailbox.clear()
        await invite(api, staff.token, pid)
        await api.deliver()
        link = token_from(mailbox.to(email)[-1])

        await update(api, staff, pid, chartStatus=chart_status)

        patient = await status(api, staff, pid)
        assert (patient["portalEnabled"], patient["portalStatus"]) == (False, "DISABLED")
        assert unauthenticated(await change(api, session, STRONG_PASSWORD, RESET))
        assert [e["code"] for e in (await redeem(api, link, RESET))["userErrors"]] == [
            "TOKEN_INVALID"
        ]
        assert (await login(api, STRONG_PASSWORD, username))["sessionToken"] is None

    # re-activating a chart does not give access back: staff enable it deliberately
    await update(api, staff, pid, chartStatus="ACTIVE")
    assert (await status(api, staff, pid))["portalStatus"] == "DISABLED"


async def _active(api: Api, staff: Staff, mailbox: Mailbox, n: int) -> tuple[str, str, str]:
    """An active patient number n: (patient id, username, email)."""
    pid = await enabled_patient(api, staff.token, n=n)
    email = f"avery.quinn{n}@example.com"
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    username = f"patient{n}"
    result = await api.gql(
        REDEEM,
        {
            "input": {
                "token": token_from(mailbox.to(email)[-1]),
                "username": username,
                "password": STRONG_PASSWORD,
            }
        },
    )
    assert result["data"]["redeemToken"]["userErrors"] == [], result
    await api.deliver()
    return pid, username, email


def pk(pid: str) -> int:
    """The database id behind a patient's global id."""
    value = patient_pk(pid)
    assert value is not None
    return value


async def live_sessions(pid: str) -> int:
    return int(
        await scalar(
            "SELECT count(*) FROM patient_session s JOIN portal_account a ON a.id = s.account_id"
            " WHERE a.patient_id = ? AND s.revoked_at IS NULL",
            pk(pid),
        )
    )


async def audit_actions(api: Api, staff: Staff, pid: str) -> list[str]:
    result = await api.gql(AUDIT, {"pid": pid, "first": 100}, staff.token)
    return [e["node"]["action"] for e in result["data"]["auditEvents"]["edges"]]


# --- 4b. a bulk invitation decides each row on the charts as they are under its lock ----


async def test_4_a_bulk_invitation_racing_changes_to_some_of_its_patients(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """The bulk path reads its patients in the statement that locks them and writes every
    table set-based; the rows that changed while it waited are judged as they are now."""
    from models import LinkToken, OutboxMessage, PortalEvent, WebhookDelivery, WebhookEndpoint

    await WebhookEndpoint.create(
        practice_id=staff.practice_id,
        url="https://receiver.example.com/hook",
        event_types=[],
        secret="whsec_" + "A" * 43 + "=",
        created_at=utcnow(),
    )
    kept, disabled, moved, closed = [await enabled_patient(api, staff.token, n=n) for n in (1, 2, 3, 4)]
    new = "moved.away@example.com"
    ids = [kept, disabled, moved, closed]

    async with paused_at("invite.before_lock") as pause:
        sending = asyncio.create_task(
            api.gql(
                "mutation($ids: [ID!]!) { sendInvitation(input: {patientIds: $ids}) {"
                " results { requestedId invitation { sentTo } userErrors { code } } } }",
                {"ids": ids},
                staff.token,
            )
        )
        await pause.reached()
        await disable(api, staff, disabled)
        await update(api, staff, moved, email=new)
        await update(api, staff, closed, chartStatus="INACTIVE")
        pause.release()
        answer = await sending
    results = {r["requestedId"]: r for r in answer["data"]["sendInvitation"]["results"]}

    assert results[kept]["userErrors"] == []
    assert results[moved]["invitation"]["sentTo"] == new
    assert [e["code"] for e in results[disabled]["userErrors"]] == ["PORTAL_DISABLED"]
    assert [e["code"] for e in results[closed]["userErrors"]] == ["INACTIVE_PATIENT"]
    assert results[disabled]["invitation"] is None and results[closed]["invitation"] is None

    # exactly the two sent rows have a link, a message, an event and a delivery
    sent = {patient_pk(kept), patient_pk(moved)}
    everyone = [patient_pk(i) for i in ids]
    links = await LinkToken.filter(patient_id__in=everyone).values_list("patient_id", "sent_to")
    assert sorted(links) == sorted([(patient_pk(kept), EMAIL), (patient_pk(moved), new)])
    messages = await OutboxMessage.filter(patient_id__in=everyone, kind="invitation").values_list(
        "patient_id", "to_addr", "link_id"
    )
    link_of = dict(await LinkToken.filter(patient_id__in=everyone).values_list("patient_id", "id"))
    assert sorted(messages) == sorted((pid, addr, link_of[pid]) for pid, addr in links)
    events = await PortalEvent.filter(type="invitation.sent").values_list(
        "id", "patient_id", "portal_status"
    )
    assert sorted((pid, s) for _, pid, s in events) == sorted((pid, "INVITED") for pid in sent)
    deliveries = await WebhookDelivery.filter(event_id__in=[e[0] for e in events]).values_list(
        "patient_id", flat=True
    )
    assert sorted(deliveries) == sorted(sent)
    # the trigger-kept copies saw the new links: both read INVITED, the others did not move
    assert (await status(api, staff, kept))["portalStatus"] == "INVITED"
    assert (await status(api, staff, moved))["lastInvitation"]["sentTo"] == new
    assert (await status(api, staff, disabled))["lastInvitation"] is None
    await api.deliver()
    assert mailbox.to(EMAIL) and mailbox.to(new)
    assert mailbox.to("avery.quinn2@example.com") == []


@pytest.mark.skipif(BACKEND != "postgres", reason="FOR UPDATE's snapshot after a wait: PostgreSQL")
async def test_a_bulk_invitation_sees_a_password_set_while_it_waited_for_the_lock(
    api: Api, staff: Staff
) -> None:
    """A writer holds a patient's lock and gives the patient a password; a bulk invitation
    waits for that lock. After the wait PostgreSQL re-reads the locked patient row but
    anything joined to it comes from the snapshot taken before the wait, so "has a
    password" must be read by a statement of its own after the locks are held: else the
    patient with a password gets the set-up message (``reset: false``)."""
    from tortoise import connections
    from tortoise.transactions import in_transaction

    from models import PasswordOrigin, Patient, PortalAccount

    pid = await enabled_patient(api, staff.token, n=1)
    pk = patient_pk(pid)
    locked, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with in_transaction():
            await Patient.select_for_update().filter(id=pk).first()
            await PortalAccount.create(
                patient_id=pk,
                username="avery.quinn",
                username_key="avery.quinn",
                password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                password_origin=PasswordOrigin.STAFF,
                password_set_at=utcnow(),
                must_change_password=True,
                failed_logins=0,
            )
            locked.set()
            await release.wait()

    holding = asyncio.create_task(writer())
    await locked.wait()
    sending = asyncio.create_task(
        api.gql(
            "mutation($ids: [ID!]!) { sendInvitation(input: {patientIds: $ids}) {"
            " results { invitation { reset } userErrors { code } } } }",
            {"ids": [pid]},
            staff.token,
        )
    )
    conn = connections.get("default")
    for _ in range(400):  # until the invitation's statement waits for the writer's lock
        waiting = await conn.execute_query_dict(
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF p%'"
        )
        if waiting[0]["n"]:
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError("the invitation never waited for the writer's lock")
    release.set()
    await holding
    answer = await sending
    [result] = answer["data"]["sendInvitation"]["results"]
    assert result["userErrors"] == []
    assert result["invitation"]["reset"] is True
