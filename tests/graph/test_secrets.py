"""No password, token or link at rest or in logs (SPEC section 3 "Audit log", "Link
tokens"; CONVENTIONS counter-examples): the whole workflow runs, every secret it handled
is collected, then every table, every audit event and every captured log line is
searched for them."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import pytest
from tortoise import connections

from models import AuditEvent, LinkToken, PatientSession, StaffUser
from tests.conftest import Api, Mailbox, Staff, body_text, token_from
from tests.helpers import STRONG_PASSWORD, enabled_patient, invite

HEX64 = re.compile(r"[0-9a-f]{64}")

REDEEM = """
mutation($input: RedeemTokenInput!) {
  redeemToken(input: $input) { account { username } userErrors { field code } }
}"""

LOGIN = """
mutation($u: String!, $p: String!) {
  login(input: {username: $u, password: $p}) { sessionToken mustChangePassword userErrors { code } }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username mustChangePassword } userErrors { field code } }
}"""

CHANGE_PASSWORD = """
mutation($input: ChangePasswordInput!) {
  changePassword(input: $input) { ok sessionToken userErrors { field code } }
}"""

SELF_RESET = """
mutation($input: IdentityInput!) {
  requestSelfReset(input: $input) { ok userErrors { code } }
}"""

REMINDER = """
mutation($input: IdentityInput!) {
  requestUsernameReminder(input: $input) { ok userErrors { code } }
}"""

TOKEN_INFO = """
query($token: String!) { tokenInfo(token: $token) { valid error username } }"""

AUDIT = """
query { auditEvents(first: 200) { edges { node {
  id action actorType actorId patientId outcome occurredAt clientAddress requestId
} } } }"""

CLAIM = {
    "email": "avery.quinn1@example.com",
    "lastName": "Quinn1",
    "dateOfBirth": "1980-04-12",
    "zipCode": "02139",
}

# Every password the workflow types, right or wrong.
FIRST_PASSWORD = STRONG_PASSWORD
TEMPORARY_PASSWORD = "staff-typed-start-77"
CHANGED_PASSWORD = "copper-lantern-meadow-17"
RESET_PASSWORD = "granite-orchard-winter-05"
WRONG_PASSWORD = "wrong-but-still-secret-31"
WEAK_PASSWORD = "tulip1234"
GUESSED_TOKEN = "Zq3vY8pLkT2mN6rB1xW4cH9dF7sJ0gA5eU_iO-KyRtE"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_login": "1000/minute", "rate_limit_token": "1000/minute"}


async def gql_ok(api: Api, query: str, variables: dict[str, Any], token: str | None = None) -> Any:
    result = await api.gql(query, variables, token)
    assert "errors" not in result, result
    return result["data"]


async def run_the_workflow(api: Api, staff: Staff, mailbox: Mailbox) -> set[str]:
    """Invite, redeem, log in, set credentials by hand, change the password, reset it
    from the login screen, with a few failures on the way. Returns every raw secret."""
    secrets = {
        staff.token,
        FIRST_PASSWORD,
        TEMPORARY_PASSWORD,
        CHANGED_PASSWORD,
        RESET_PASSWORD,
        WRONG_PASSWORD,
        WEAK_PASSWORD,
        GUESSED_TOKEN,
    }

    # staff invite; the patient redeems the link (one weak try first)
    avery = await enabled_patient(api, staff.token, n=1)
    assert (await invite(api, staff.token, avery))["userErrors"] == []
    await api.deliver()
    [invitation] = mailbox.to("avery.quinn1@example.com")
    link_token = token_from(invitation)
    secrets.add(link_token)
    assert (await gql_ok(api, TOKEN_INFO, {"token": link_token}))["tokenInfo"]["valid"]
    weak = await gql_ok(
        api,
        REDEEM,
        {"input": {"token": link_token, "username": "avery.q", "password": WEAK_PASSWORD}},
    )
    assert weak["redeemToken"]["userErrors"] == [
        {"field": ["password"], "code": "PASSWORD_TOO_WEAK"}
    ]
    redeemed = await gql_ok(
        api,
        REDEEM,
        {"input": {"token": link_token, "username": "avery.q", "password": FIRST_PASSWORD}},
    )
    assert redeemed["redeemToken"]["userErrors"] == []
    guessed = await gql_ok(
        api,
        REDEEM,
        {"input": {"token": GUESSED_TOKEN, "username": "x.y", "password": FIRST_PASSWORD}},
    )
    assert guessed["redeemToken"]["userErrors"] == [{"field": ["token"], "code": "TOKEN_INVALID"}]

    # the patient logs in, once wrongly
    wrong = await gql_ok(api, LOGIN, {"u": "avery.q", "p": WRONG_PASSWORD})
    assert wrong["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    session = (await gql_ok(api, LOGIN, {"u": "avery.q", "p": FIRST_PASSWORD}))["login"][
        "sessionToken"
    ]
    secrets.add(session)

    # staff set credentials by hand for a second patient, who logs in and must change
    blair = await enabled_patient(api, staff.token, n=2, firstName="Blair")
    creds = await gql_ok(
        api,
        SET_CREDENTIALS,
        {"input": {"patientId": blair, "username": "blair.q", "password": TEMPORARY_PASSWORD}},
        staff.token,
    )
    assert creds["setCredentials"]["userErrors"] == []
    temp = (await gql_ok(api, LOGIN, {"u": "blair.q", "p": TEMPORARY_PASSWORD}))["login"]
    assert temp["mustChangePassword"] is True
    secrets.add(temp["sessionToken"])
    changed = await gql_ok(
        api,
        CHANGE_PASSWORD,
        {"input": {"currentPassword": TEMPORARY_PASSWORD, "newPassword": CHANGED_PASSWORD}},
        temp["sessionToken"],
    )
    assert changed["changePassword"]["ok"] is True
    secrets.add(changed["changePassword"]["sessionToken"])
    # a stale session and no session at all: top-level errors, logged by the server
    stale = await api.gql(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": CHANGED_PASSWORD, "newPassword": WRONG_PASSWORD}},
        temp["sessionToken"],
    )
    assert stale["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # the first patient forgets the password and resets it from the login screen
    await gql_ok(api, SELF_RESET, {"input": CLAIM})
    await gql_ok(api, REMINDER, {"input": CLAIM})
    await api.deliver()
    [reset_mail] = [m for m in mailbox.to("avery.quinn1@example.com") if "#token=" in body_text(m)][
        1:
    ]
    reset_token = token_from(reset_mail)
    secrets.add(reset_token)
    reset = await gql_ok(
        api,
        REDEEM,
        {
            "input": {
                "token": reset_token,
                "password": RESET_PASSWORD,
                "dateOfBirth": CLAIM["dateOfBirth"],
            }
        },
    )
    assert reset["redeemToken"]["userErrors"] == []
    final = (await gql_ok(api, LOGIN, {"u": "avery.q", "p": RESET_PASSWORD}))["login"]
    secrets.add(final["sessionToken"])
    await api.deliver()

    # every mail went out, so every queued body has been scrubbed
    for secret in (session, link_token, reset_token):
        assert len(secret) >= 40
    return {s for s in secrets if s}


async def dump_every_table() -> str:
    conn = connections.get("default")
    if conn.capabilities.dialect == "sqlite":
        rows = await conn.execute_query_dict(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        tables = [r["name"] for r in rows]
    else:
        rows = await conn.execute_query_dict(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        tables = [r["tablename"] for r in rows]
    assert {"link_token", "audit_event", "outbox_message", "patient_session"} <= set(tables)
    parts = []
    for table in sorted(tables):
        for row in await conn.execute_query_dict(f'SELECT * FROM "{table}"'):
            parts.append(f"{table}: {row!r}")
    return "\n".join(parts)


async def test_no_secret_is_stored_audited_or_logged(
    api: Api,
    staff: Staff,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)

    # given the whole workflow ran
    secrets = await run_the_workflow(api, staff, mailbox)
    assert len(secrets) >= 12

    # then no table holds any of them
    dump = await dump_every_table()
    assert "link_token" in dump and "audit_event" in dump
    for secret in secrets:
        assert secret not in dump, f"a secret is stored: {secret[:6]}…"

    # nor any audit event, as stored or as staff read them
    events = await AuditEvent.all()
    assert len(events) > 10
    audit_text = repr([vars(e) for e in events])
    read = await gql_ok(api, AUDIT, {}, staff.token)
    audit_text += repr(read)
    for secret in secrets:
        assert secret not in audit_text
    for event in events:
        assert not any(
            word in key.lower()
            for key in (event.detail or {})
            for word in ("password", "token", "link", "email")
        ), event.detail

    # nor any log line, through the standard library or structlog's printer
    captured = capfd.readouterr()
    # aiosmtpd's "mail.log" is the test's SMTP server, the clinic's mail system in real
    # life: it receives the link by design and logs message lines at DEBUG. Everything
    # else, the service and its libraries, is searched.
    service = [r for r in caplog.records if r.name != "mail.log"]
    records = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in service
    )
    text = "\n".join(caplog.handler.format(r) for r in service)
    logs = "\n".join([text, records, captured.out, captured.err])
    assert "http.request" in logs  # the capture did see the service's own log lines
    for secret in secrets:
        assert secret not in logs, f"a secret is logged: {secret[:6]}…"


async def test_stored_digests_are_sha256_hex(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])
    redeemed = await gql_ok(
        api, REDEEM, {"input": {"token": token, "username": "avery.q", "password": STRONG_PASSWORD}}
    )
    assert redeemed["redeemToken"]["userErrors"] == []
    session = (await gql_ok(api, LOGIN, {"u": "avery.q", "p": STRONG_PASSWORD}))["login"][
        "sessionToken"
    ]

    [link] = await LinkToken.all()
    assert HEX64.fullmatch(link.digest)
    assert link.digest == hashlib.sha256(token.encode()).hexdigest()
    [stored_session] = await PatientSession.all()
    assert HEX64.fullmatch(stored_session.token_digest)
    assert stored_session.token_digest == hashlib.sha256(session.encode()).hexdigest()
    [staff_user] = await StaffUser.filter(id=staff.staff_id)
    assert staff_user.token_digest == hashlib.sha256(staff.token.encode()).hexdigest()


async def test_secrets_in_a_refused_request_are_not_logged(
    api: Api,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "inline-secret-password-88"

    # a client that writes the password into the document and misspells a field
    response = await api.client.post(
        "/graphql",
        json={
            "query": 'mutation { login(input: {username: "avery.q", password: "'
            + secret
            + '"}) { sessionTokn } }'
        },
    )

    # and one that leaves out a required field next to a token (the coercion error's
    # message quotes the whole input object)
    incomplete = await api.client.post(
        "/graphql", json={"query": REDEEM, "variables": {"input": {"token": GUESSED_TOKEN}}}
    )

    for refused in (response, incomplete):
        assert refused.status_code in (200, 400)
        assert "errors" in refused.json()
    captured = capfd.readouterr()
    logs = "\n".join([caplog.text, captured.out, captured.err])
    assert "http.request" in logs
    assert "graphql.refused" in logs
    assert secret not in logs
    assert GUESSED_TOKEN not in logs
