"""SECURITY.md section ENUM: self-service and user-enumeration safety."""

from __future__ import annotations

import json
import random
import statistics
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine

from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import STRONG_PASSWORD, create_patient, enabled_patient, invite
from tests.security.support import (
    REMINDER,
    SELF_RESET,
    SET_CREDENTIALS,
    TOKEN_INFO,
    UPDATE_PATIENT,
    HasherSpy,
    active_patient,
    codes,
    identity,
    invited,
    login,
    redeem,
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Lots of requests from one test client: budgets out of the way, trusted proxy so
    # tests can speak for several addresses.
    return {
        "rate_limit_self_service": "100000/minute",
        "rate_limit_login": "100000/minute",
        "rate_limit_token": "100000/minute",
        "trusted_proxies": ["203.0.113.7/32"],
    }


async def lock(api: Api, username: str) -> None:
    for _ in range(api.settings.lockout_threshold):
        await login(api, username, "not-the-password-at-all")


async def enumeration_cases(api: Api, staff: Staff, mailbox: Mailbox) -> dict[str, dict[str, Any]]:
    """Identity claims for every kind of chart the login screen can be asked about."""
    await active_patient(api, staff.token, mailbox, n=1, username="match.user")
    await active_patient(api, staff.token, mailbox, n=2, username="locked.user")
    await lock(api, "locked.user")
    await create_patient(api, staff.token, n=3)  # portal never enabled
    inactive = await enabled_patient(api, staff.token, n=4)
    await api.gql(UPDATE_PATIENT, {"input": {"id": inactive, "chartStatus": "INACTIVE"}}, staff.token)
    await enabled_patient(api, staff.token, n=5, zipCode=None)  # no ZIP on file
    await enabled_patient(api, staff.token, n=6, email="family@example.com")
    await enabled_patient(api, staff.token, n=7, email="family@example.com", lastName="Quinn6")
    await api.deliver()
    mailbox.clear()
    return {
        "match": identity(1),
        "locked": identity(2),
        "nonexistent": identity(99, email="nobody.at.all@example.com"),
        "portal_disabled": identity(3),
        "inactive_chart": identity(4),
        "no_zip": identity(5),
        "shared_email": identity(6, email="family@example.com"),
        "wrong_dob": identity(1, dateOfBirth="1980-04-13"),
        "wrong_name": identity(1, lastName="Quinn2"),
        "wrong_zip": identity(1, zipCode="02140"),
    }


def comparable(response: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted(
        (k.lower(), "" if k.lower() == "x-request-id" else v) for k, v in response.headers.items()
    )
    return response.status_code, response.content, headers


@pytest.mark.parametrize("document", [SELF_RESET, REMINDER], ids=["selfReset", "usernameReminder"])
async def test_self_service_answers_identically_whatever_matched(
    api: Api, staff: Staff, mailbox: Mailbox, document: str
) -> None:
    """ENUM-1: requestSelfReset and requestUsernameReminder answer with the same status,
    body and headers for a match, an unknown address, a locked account and every kind of
    ineligible or mismatching chart."""
    cases = await enumeration_cases(api, staff, mailbox)
    answers = {}
    for name, claim in cases.items():
        response = await api.client.post(
            "/graphql", json={"query": document, "variables": {"input": claim}}
        )
        answers[name] = comparable(response)
    reference = answers["match"]
    assert reference[0] == 200
    assert json.loads(reference[1])["data"] and b'"ok":true' in reference[1]
    for name, answer in answers.items():
        assert answer == reference, name

    # The cases really differ: only the eligible, matching charts got mail.
    await api.deliver()
    got_mail = sorted({m["To"] for m in mailbox.messages})
    assert got_mail == ["avery.quinn1@example.com", "avery.quinn2@example.com"]


async def test_self_reset_timing_does_not_tell_a_match(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """ENUM-2: medians of 200 interleaved requestSelfReset requests for a matching and a
    non-matching claim differ by < 5 ms. The lookup and any mail run after the answer is
    decided (background task + outbox), so neither branch has a quick exit."""
    await active_patient(api, staff.token, mailbox, n=1)
    match = {"query": SELF_RESET, "variables": {"input": identity(1)}}
    miss = {"query": SELF_RESET, "variables": {"input": identity(1, dateOfBirth="1981-04-12")}}
    background = api.services.background

    async def timed(body: dict[str, Any]) -> float:
        started = time.perf_counter()
        response = await api.client.post("/graphql", json=body)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        # The post-response work of this request must not bleed into the next sample.
        await background.drain()
        return elapsed

    for _ in range(20):  # warm up caches, pools and the parser cache
        await timed(match)
        await timed(miss)
    order = [True] * 200 + [False] * 200
    random.Random(1234).shuffle(order)
    samples: dict[bool, list[float]] = {True: [], False: []}
    for is_match in order:
        samples[is_match].append(await timed(match if is_match else miss))

    difference = abs(statistics.median(samples[True]) - statistics.median(samples[False]))
    assert difference < 0.005, (
        f"median match {statistics.median(samples[True]) * 1000:.2f} ms, "
        f"median miss {statistics.median(samples[False]) * 1000:.2f} ms"
    )
    # and the matching claim really did work in the background
    assert await _self_service_links() >= 1


async def _self_service_links() -> int:
    from tests.security.support import scalar

    return int(await scalar("SELECT COUNT(*) AS n FROM link_token WHERE purpose = 'self_service'"))


async def test_self_service_mail_is_throttled_per_account(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """ENUM-3: however many addresses ask, one chart gets at most one self-service link and
    one username reminder per cooldown window; inside it the answer stays the same."""
    await active_patient(api, staff.token, mailbox, n=1)
    for i in range(4):
        forwarded = {"X-Forwarded-For": f"198.51.100.{i + 1}"}
        reset = await api.gql(SELF_RESET, {"input": identity(1)}, **forwarded)
        assert reset["data"]["requestSelfReset"]["ok"] is True
        reminder = await api.gql(REMINDER, {"input": identity(1)}, **forwarded)
        assert reminder["data"]["requestUsernameReminder"]["ok"] is True
    await api.deliver()
    subjects = sorted(m["Subject"] for m in mailbox.to("avery.quinn1@example.com"))
    assert len(subjects) == 2, subjects

    later = datetime.now().astimezone() + timedelta(
        minutes=api.settings.self_service_cooldown_minutes, seconds=30
    )
    with time_machine.travel(later, tick=False):
        await api.gql(SELF_RESET, {"input": identity(1)})
        await api.deliver()
    assert len(mailbox.to("avery.quinn1@example.com")) == 3


async def test_login_failures_are_indistinguishable(
    api: Api, staff: Staff, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENUM-4: unknown user, wrong password, locked, portal-disabled, inactive-chart and
    password-less accounts all get the same INVALID_CREDENTIALS answer, and each costs
    exactly one argon2 verification (a dummy one when there is no usable hash)."""
    await active_patient(api, staff.token, mailbox, n=1, username="right.user")
    await active_patient(api, staff.token, mailbox, n=2, username="locked.user")
    await lock(api, "locked.user")
    disabled = await active_patient(api, staff.token, mailbox, n=3, username="disabled.user")
    await api.gql(
        "mutation($ids: [ID!]!) { disablePortal(input: {patientIds: $ids}) { userErrors { code } } }",
        {"ids": [disabled]},
        staff.token,
    )
    inactive = await active_patient(api, staff.token, mailbox, n=4, username="inactive.user")
    await api.gql(UPDATE_PATIENT, {"input": {"id": inactive, "chartStatus": "DECEASED"}}, staff.token)
    bare = await enabled_patient(api, staff.token, n=5)
    result = await api.gql(SET_CREDENTIALS, {"pid": bare, "u": "nopassword.user"}, staff.token)
    assert result["data"]["setCredentials"]["userErrors"] == []

    spy = HasherSpy().install(api, monkeypatch)
    attempts = {
        "unknown": ("no.such.user", STRONG_PASSWORD),
        "wrong_password": ("right.user", "not-the-password-at-all"),
        "locked": ("locked.user", STRONG_PASSWORD),
        "portal_disabled": ("disabled.user", STRONG_PASSWORD),
        "inactive_chart": ("inactive.user", STRONG_PASSWORD),
        "no_password": ("nopassword.user", STRONG_PASSWORD),
    }
    answers = {}
    for name, (username, password) in attempts.items():
        before = len(spy.verified)
        response = await api.client.post(
            "/graphql",
            json={
                "query": "mutation($u: String!, $p: String!) { login(input: {username: $u, "
                "password: $p}) { sessionToken mustChangePassword userErrors { field code message } } }",
                "variables": {"u": username, "p": password},
            },
        )
        answers[name] = comparable(response)
        assert len(spy.verified) == before + 1, name
    reference = answers["unknown"]
    body = json.loads(reference[1])["data"]["login"]
    assert body["sessionToken"] is None and codes(body) == ["INVALID_CREDENTIALS"]
    for name, answer in answers.items():
        assert answer == reference, name
    # the right password still works for the healthy account
    assert (await login(api, "right.user", STRONG_PASSWORD))["sessionToken"]


TOKEN_INFO_FIELDS = {"valid", "error", "usernameRequired", "username", "expiresAt", "dateOfBirthRequired"}


async def test_token_info_discloses_nothing_about_the_patient(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """ENUM-5: tokenInfo exposes only the spec's fields (plus error and the SPEC 7.1 DOB
    flag), never the patient's name, address or birth date; malformed, unknown and revoked
    tokens give one identical answer; used and expired ones say so (NIST 63B §6.3)."""
    schema = await api.gql('{ __type(name: "TokenInfo") { fields { name } } }')
    assert {f["name"] for f in schema["data"]["__type"]["fields"]} == TOKEN_INFO_FIELDS

    pid, revoked = await invited(api, staff.token, mailbox, n=1)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    current = token_from(mailbox.to("avery.quinn1@example.com")[-1])
    _, used = await invited(api, staff.token, mailbox, n=2)
    assert (await redeem(api, used, "second.user"))["userErrors"] == []

    async def info(token: str) -> dict[str, Any]:
        response = await api.client.post(
            "/graphql", json={"query": TOKEN_INFO, "variables": {"t": token}}
        )
        assert "Quinn" not in response.text and "example.com" not in response.text
        assert "1980" not in response.text and "02139" not in response.text
        return response.json()["data"]["tokenInfo"]

    invalid = {
        "valid": False,
        "error": "TOKEN_INVALID",
        "usernameRequired": False,
        "username": None,
        "expiresAt": None,
        "dateOfBirthRequired": False,
    }
    for token in ("", "%%%", "a" * 5000, "x" * 43, revoked, current[:-1] + ("A" if current[-1] != "A" else "B")):
        assert await info(token) == invalid, token
    assert (await info(used)) == {**invalid, "error": "TOKEN_USED"}
    good = await info(current)
    assert good["valid"] is True and good["usernameRequired"] is True and good["username"] is None
    later = datetime.fromisoformat(good["expiresAt"].replace("Z", "+00:00")) + timedelta(seconds=1)
    with time_machine.travel(later, tick=False):
        assert (await info(current)) == {**invalid, "error": "TOKEN_EXPIRED"}
    assert codes(await redeem(api, revoked, "x.user")) == ["TOKEN_INVALID"]
