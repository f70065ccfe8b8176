"""SECURITY.md section LOG: audit and logging (HIPAA). Client addresses behind proxies
(LOG-5) are also exercised in test_rate_limits.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine

from models import ActorType
from onboarding.actor import Actor
from onboarding.admin import create_staff
from onboarding.audit import record
from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import ENABLE, STRONG_PASSWORD, create_patient, invite, pk
from tests.security.support import (
    AUDIT,
    CHANGE_PASSWORD,
    REMINDER,
    SELF_RESET,
    SET_CREDENTIALS,
    TOKEN_INFO,
    UPDATE_PATIENT,
    active_patient,
    identity,
    login,
    redeem,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_login": "1000/minute", "rate_limit_self_service": "1000/minute"}


async def test_staff_actions_name_the_individual(api: Api, staff: Staff) -> None:
    """LOG-1: every staff action is attributed to the individual staff user (HIPAA unique
    user identification), never to the practice."""
    second, second_token = await create_staff(staff.practice_id, "Sam Second Desk")
    first_pid = await create_patient(api, staff.token, n=1)
    second_pid = await create_patient(api, second_token, n=2)
    await api.gql(ENABLE, {"ids": [first_pid]}, staff.token)
    await api.gql(ENABLE, {"ids": [second_pid]}, second_token)

    events = (await api.gql(AUDIT, {"first": 50}, staff.token))["data"]["auditEvents"]["edges"]
    by_patient: dict[str, set[tuple[str, str]]] = {}
    for edge in events:
        node = edge["node"]
        assert node["actorType"] == "STAFF" and node["actorId"]
        by_patient.setdefault(node["patientId"], set()).add((node["action"], node["actorId"]))
    assert by_patient[first_pid] == {("patient.created", str(staff.staff_id)), ("portal.enabled", str(staff.staff_id))}
    assert by_patient[second_pid] == {("patient.created", str(second.id)), ("portal.enabled", str(second.id))}


async def test_audit_records_who_what_when_where(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """LOG-2: staff actions, redemptions, self-service requests, login success/failure,
    lock-out, password change and token reuse are recorded with actor, practice, patient,
    action, outcome, UTC time, client address and the request id of the HTTP answer."""
    pid = await active_patient(api, staff.token, mailbox)
    response = await api.client.post(
        "/graphql",
        json={"query": UPDATE_PATIENT, "variables": {"input": {"id": pid, "zipCode": "02140"}}},
        headers={"authorization": f"Bearer {staff.token}"},
    )
    request_id = response.headers["x-request-id"]
    for _ in range(api.settings.lockout_threshold):
        await login(api, "patient1", "not-the-password-at-all")
    await login(api, "nobody.here", "not-the-password-at-all")
    with time_machine.travel(datetime.now().astimezone() + timedelta(minutes=20), tick=False):
        session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
        await api.gql(CHANGE_PASSWORD, {"c": STRONG_PASSWORD, "n": "a-brand-new-passphrase-9"}, session)
    await api.gql(SELF_RESET, {"input": identity(1, zipCode="02140")})
    await api.gql(REMINDER, {"input": identity(1, zipCode="02140")})
    await api.deliver()
    used = token_from(_first_link(mailbox))
    assert (await redeem(api, used, None, "another-passphrase-77", "1980-04-12"))["userErrors"] == []
    await redeem(api, used, None, "another-passphrase-78", "1980-04-12")  # token reuse
    await api.services.background.drain()

    rows = await table_rows("audit_event")
    actions = {row["action"] for row in rows}
    for expected in (
        "patient.created",
        "portal.enabled",
        "invitation.sent",
        "link.redeemed",
        "patient.updated",
        "login.failed",
        "login.locked_out",
        "login.succeeded",
        "password.changed",
        "self_reset.requested",
        "username_reminder.requested",
        "link.redeem_refused",
    ):
        assert expected in actions, expected
    for row in rows:
        assert row["action"] and row["actor_type"] and row["outcome"]
        assert row["client_addr"] == "203.0.113.7"
        assert row["request_id"]
        occurred = row["occurred_at"]
        moment = occurred if isinstance(occurred, datetime) else datetime.fromisoformat(str(occurred))
        assert moment.utcoffset() == timedelta(0)
    staff_rows = [r for r in rows if r["actor_type"] == "STAFF"]
    assert all(r["practice_id"] == staff.practice_id and r["actor_id"] == staff.staff_id for r in staff_rows)
    [update] = [r for r in rows if r["action"] == "patient.updated"]
    assert update["request_id"] == request_id and update["patient_id"] == pk(pid)
    reuse = [r for r in rows if r["action"] == "link.redeem_refused"]
    assert any("TOKEN_USED" in json.dumps(r["detail"], default=str) for r in reuse)
    failures = [r for r in rows if r["action"] == "login.failed"]
    assert any(r["patient_id"] is None for r in failures)  # unknown user: no chart named

    api_events = (await api.gql(AUDIT, {"pid": pid, "first": 100}, staff.token))["data"]["auditEvents"]["edges"]
    node = api_events[0]["node"]
    assert node["occurredAt"].endswith(("+00:00", "Z"))
    assert {e["node"]["actorType"] for e in api_events} >= {"STAFF", "PATIENT", "ANONYMOUS"}


def _first_link(mailbox: Mailbox) -> Any:
    """The set-up invitation was cleared from the mailbox: the only link left is the
    self-service one this test asked for."""
    return [m for m in mailbox.to("avery.quinn1@example.com") if "#token=" in m.as_string()][0]


async def test_no_secrets_or_health_data_in_logs(
    api: Api,
    staff: Staff,
    mailbox: Mailbox,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LOG-3: after a full workflow (invite, redeem, login failures, lock-out, password
    change, self-service, staff-set password, refused and faulty requests) neither the
    structlog output nor stdlib logging holds a password, token, link, session or staff
    token, nor the patient's email, name or birth date."""
    caplog.set_level(logging.INFO)
    secrets: list[str] = [staff.token, "violet-harbor-tuesday-42"]
    phi = ["avery.quinn1@example.com", "Quinn1", "1980-04-12", "02139"]

    pid = await create_patient(api, staff.token, n=1)
    await api.gql(ENABLE, {"ids": [pid]}, staff.token)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    link_token = token_from(mailbox.to("avery.quinn1@example.com")[-1])
    secrets += [link_token, f"#token={link_token}"]
    await api.gql(TOKEN_INFO, {"t": link_token})
    assert (await redeem(api, link_token, "avery.q", STRONG_PASSWORD))["userErrors"] == []
    await redeem(api, link_token, "avery.q", STRONG_PASSWORD)  # reuse
    for i in range(api.settings.lockout_threshold + 1):
        wrong = f"wrong-guess-{i}-zzzz"
        secrets.append(wrong)
        await login(api, "avery.q", wrong)
    with time_machine.travel(datetime.now().astimezone() + timedelta(minutes=20), tick=False):
        session = (await login(api, "avery.q", STRONG_PASSWORD))["sessionToken"]
        changed = await api.gql(CHANGE_PASSWORD, {"c": STRONG_PASSWORD, "n": "second-passphrase-88"}, session)
    fresh_session = changed["data"]["changePassword"]["sessionToken"]
    secrets += [session, fresh_session, "second-passphrase-88"]
    await api.gql(SELF_RESET, {"input": identity(1)})
    await api.gql(REMINDER, {"input": identity(1)})
    await api.deliver()
    reset_token = token_from([m for m in mailbox.to("avery.quinn1@example.com") if "#token=" in m.as_string()][-1])
    secrets.append(reset_token)
    await api.gql(SET_CREDENTIALS, {"pid": pid, "u": "avery.q", "p": "staff-typed-secret-55"}, staff.token)
    secrets.append("staff-typed-secret-55")
    # refused requests that quote secrets back in their error messages
    await api.client.post(
        "/graphql",
        json={"query": 'mutation { login(input: {username: "avery.q", password: "literal-secret-66", bogus: 1}) { sessionToken } }'},
    )
    await api.client.post(
        "/graphql",
        json={"query": "mutation($p: Int!) { login(input: {username: \"avery.q\", password: $p}) { sessionToken } }",
              "variables": {"p": "variable-secret-77"}},
    )
    await api.client.get("/graphql", params={"query": '{ tokenInfo(token: "query-string-secret-88") { valid } }'})
    secrets += ["literal-secret-66", "variable-secret-77", "query-string-secret-88"]
    # a fault inside a resolver while a token is in the request
    import graph.queries

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(graph.queries, "token_info", broken)
    await api.gql(TOKEN_INFO, {"t": reset_token})
    await api.services.background.drain()

    structured = capsys.readouterr().err
    # httpx (the test's client) and aiosmtpd's "mail.log" (the test's SMTP server) are the
    # test harness, not the service
    service_records = [
        r for r in caplog.records if not r.name.startswith("httpx") and r.name != "mail.log"
    ]
    stdlib = "\n".join(
        caplog.handler.format(r) + str(r.args) + str(getattr(r, "exc_text", ""))
        for r in service_records
    )
    captured = structured + "\n" + stdlib
    assert "http.request" in captured  # the capture really saw the service's logs
    assert "database went away" in captured  # ... including the masked fault
    for secret in secrets:
        assert secret not in captured, f"secret in logs: {secret[:12]}…"
    for value in phi:
        assert value not in captured, f"patient data in logs: {value}"


async def test_audit_trail_holds_no_secrets(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """LOG-3: audit rows never carry a password, token, link or address, and the recorder
    refuses detail keys that look like one."""
    await active_patient(api, staff.token, mailbox)
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    await login(api, "patient1", "wrong-password-xyz")
    rows = json.dumps(await table_rows("audit_event"), default=str)
    for secret in (session, STRONG_PASSWORD, "wrong-password-xyz", staff.token, "#token=", "avery.quinn1@"):
        assert secret not in rows
    actor = Actor(ActorType.SYSTEM, None, None, None, None)
    for key in ("password", "new_token", "link", "email", "client_secret"):
        with pytest.raises(ValueError):
            await record(actor, "test.event", detail={key: "x"})


PRODUCTION_LOG_SCRIPT = r"""
import asyncio, logging, sys
import httpx
from core.settings import Settings
from graph.app import create_app

async def main():
    settings = Settings(_env_file=None, env="production", allow_insecure_defaults=True,
                        database_url="sqlite://unused", mail_backend="smtp",
                        link_base_url="https://portal.clinic.test/activate")
    app = create_app(settings, manage_database=False)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the test client, not the service
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
        await c.get("/graphql%0Ainjected line%0A{\"event\": \"forged\"}")
        await c.get("/graphql", params={"query": "{ tokenInfo(token: \"query-string-secret\") { valid } }"})
        await c.post("/graphql", json={"query": "{ __typename }"})
        await c.post("/graphql", json={"query": "mutation { login(input: {username: \"u\", password: \"literal-secret\", x: 1}) { sessionToken } }"})
    app.state.services.hasher.close()

asyncio.run(main())
"""


def test_production_logs_are_json_lines_in_utc() -> None:
    """LOG-4, LOG-2: production logs are one JSON object per line (a newline in a request
    path cannot forge a line), with a UTC timestamp and the request id; query strings and
    literal secrets stay out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", PRODUCTION_LOG_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(events) >= 4
    for line in lines:
        assert line.startswith("{"), f"not a JSON log line: {line!r}"
    for event in events:
        assert event["timestamp"].endswith("Z")
        assert event.get("event") != "forged"
    requests = [e for e in events if e["event"] == "http.request"]
    assert len(requests) == 4 and all(e.get("request_id") for e in requests)
    assert "query-string-secret" not in done.stderr and "literal-secret" not in done.stderr
