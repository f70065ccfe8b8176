"""requestSelfReset and requestUsernameReminder (SPEC 2.1, 4): the identity check, the
mail it sends, and one answer for every caller whatever matched (no enumeration)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine

from core.clock import utcnow
from models import AuditEvent, LinkToken
from tests.conftest import Api, Mailbox, Staff, body_text, token_from
from tests.helpers import create_patient, enabled_patient, pk

SELF_RESET = """
mutation($input: IdentityInput!) {
  requestSelfReset(input: $input) { ok message userErrors { field code message } }
}"""

REMINDER = """
mutation($input: IdentityInput!) {
  requestUsernameReminder(input: $input) { ok message userErrors { field code message } }
}"""

TOKEN_INFO = """
query($token: String!) {
  tokenInfo(token: $token) { valid error usernameRequired username expiresAt }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username } userErrors { field code } }
}"""

UPDATE = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id } userErrors { code } }
}"""

DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) { results { userErrors { code } } }
}"""

OPERATIONS = {"requestSelfReset": SELF_RESET, "requestUsernameReminder": REMINDER}

# The chart tests.helpers.chart(n=1) creates.
EMAIL = "avery.quinn1@example.com"
CLAIM = {
    "email": EMAIL,
    "lastName": "Quinn1",
    "dateOfBirth": "1980-04-12",
    "zipCode": "02139",
}
USERNAME = "quinn.first"

# A second eligible patient in every comparison, so each answer is compared with the
# answer for a real match made in the same test.
CONTROL_EMAIL = "avery.quinn50@example.com"
CONTROL_CLAIM = {**CLAIM, "email": CONTROL_EMAIL, "lastName": "Quinn50"}
CONTROL_USERNAME = "quinn.control"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Dozens of requests from one client address in one test: the budget is not the
    # subject here.
    return {"rate_limit_self_service": "1000/minute", "rate_limit_token": "1000/minute"}


async def post(api: Api, operation: str, claim: dict[str, str]) -> httpx.Response:
    return await api.client.post(
        "/graphql", json={"query": OPERATIONS[operation], "variables": {"input": claim}}
    )


def same_answer(a: httpx.Response, b: httpx.Response) -> None:
    """Byte-identical bodies and statuses; the same header names (x-request-id differs
    per request by design), and the same header values apart from that id."""
    assert a.status_code == b.status_code == 200
    assert a.content == b.content
    assert set(a.headers.keys()) == set(b.headers.keys())
    drop = {"x-request-id"}
    assert {k: v for k, v in a.headers.items() if k not in drop} == {
        k: v for k, v in b.headers.items() if k not in drop
    }


async def with_username(api: Api, staff: Staff, pid: str, username: str) -> None:
    result = await api.gql(
        SET_CREDENTIALS, {"input": {"patientId": pid, "username": username}}, staff.token
    )
    assert result["data"]["setCredentials"]["userErrors"] == []


async def eligible(api: Api, staff: Staff, n: int = 1, **chart: Any) -> str:
    pid = await enabled_patient(api, staff.token, n=n, **chart)
    await with_username(api, staff, pid, USERNAME if n == 1 else f"quinn.{n}")
    return pid


async def control(api: Api, staff: Staff) -> str:
    pid = await enabled_patient(api, staff.token, n=50)
    await with_username(api, staff, pid, CONTROL_USERNAME)
    return pid


async def update(api: Api, staff: Staff, pid: str, **fields: Any) -> None:
    result = await api.gql(UPDATE, {"input": {"id": pid, **fields}}, staff.token)
    assert result["data"]["updatePatient"]["userErrors"] == []


def links_in(messages: list[Any]) -> list[str]:
    return [token_from(m) for m in messages if "#token=" in body_text(m)]


# --- the ineligible cases ----------------------------------------------------------

Setup = Callable[[Api, Staff], Awaitable[dict[str, str]]]


async def wrong_email(api: Api, staff: Staff) -> dict[str, str]:
    await eligible(api, staff)
    return {**CLAIM, "email": "avery.quinn@example.com"}


async def wrong_last_name(api: Api, staff: Staff) -> dict[str, str]:
    await eligible(api, staff)
    return {**CLAIM, "lastName": "Quinn"}


async def wrong_date_of_birth(api: Api, staff: Staff) -> dict[str, str]:
    await eligible(api, staff)
    return {**CLAIM, "dateOfBirth": "1980-12-04"}


async def wrong_zip(api: Api, staff: Staff) -> dict[str, str]:
    await eligible(api, staff)
    return {**CLAIM, "zipCode": "02140"}


async def inactive_chart(api: Api, staff: Staff) -> dict[str, str]:
    pid = await eligible(api, staff)
    await update(api, staff, pid, chartStatus="INACTIVE")
    return CLAIM


async def deceased_chart(api: Api, staff: Staff) -> dict[str, str]:
    pid = await eligible(api, staff)
    await update(api, staff, pid, chartStatus="DECEASED")
    return CLAIM


async def portal_disabled(api: Api, staff: Staff) -> dict[str, str]:
    pid = await eligible(api, staff)
    result = await api.gql(DISABLE, {"ids": [pid]}, staff.token)
    assert result["data"]["disablePortal"]["results"][0]["userErrors"] == []
    return CLAIM


async def portal_never_enabled(api: Api, staff: Staff) -> dict[str, str]:
    await create_patient(api, staff.token)
    return CLAIM


async def no_zip_on_file(api: Api, staff: Staff) -> dict[str, str]:
    await eligible(api, staff, zipCode=None)
    return CLAIM


async def zip_cleared(api: Api, staff: Staff) -> dict[str, str]:
    pid = await eligible(api, staff)
    await update(api, staff, pid, zipCode=None)
    return CLAIM


async def shared_email(api: Api, staff: Staff) -> dict[str, str]:
    # a sibling's chart carries the same address; the claim matches the first chart
    await eligible(api, staff)
    await create_patient(
        api, staff.token, n=2, email=EMAIL.upper(), firstName="Blair", dateOfBirth="2010-06-01"
    )
    return CLAIM


INELIGIBLE: dict[str, Setup] = {
    "wrong email": wrong_email,
    "wrong last name": wrong_last_name,
    "wrong date of birth": wrong_date_of_birth,
    "wrong ZIP": wrong_zip,
    "inactive chart": inactive_chart,
    "deceased chart": deceased_chart,
    "portal disabled": portal_disabled,
    "portal never enabled": portal_never_enabled,
    "no ZIP on file": no_zip_on_file,
    "ZIP cleared": zip_cleared,
    "shared email": shared_email,
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("case", list(INELIGIBLE))
async def test_ineligible_requests_answer_like_a_match_and_send_nothing(
    api: Api, staff: Staff, mailbox: Mailbox, operation: str, case: str
) -> None:
    # given an eligible control patient and the case under test
    await control(api, staff)
    claim = await INELIGIBLE[case](api, staff)

    # when both ask
    refused = await post(api, operation, claim)
    matched = await post(api, operation, CONTROL_CLAIM)
    await api.deliver()

    # then the answers cannot be told apart
    same_answer(refused, matched)
    assert refused.json() == {
        "data": {
            operation: {
                "ok": True,
                "message": refused.json()["data"][operation]["message"],
                "userErrors": [],
            }
        }
    }
    # and only the control patient got mail
    assert [m["To"] for m in mailbox.messages] == [CONTROL_EMAIL]
    assert USERNAME not in refused.text
    assert CONTROL_USERNAME not in matched.text


async def test_answers_are_identical_across_every_case(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """All cases side by side in one app: one body for the match and every miss."""
    await control(api, staff)
    responses = {"match": await post(api, "requestSelfReset", CONTROL_CLAIM)}
    for name, claim in (
        ("unknown address", {**CLAIM, "email": "nobody@example.com"}),
        ("malformed address", {**CLAIM, "email": "not an address"}),
        ("oversized field", {**CLAIM, "lastName": "x" * 5000}),
        ("empty fields", {**CLAIM, "email": "", "lastName": "", "zipCode": ""}),
    ):
        responses[name] = await post(api, "requestSelfReset", claim)
    await api.deliver()

    reference = responses["match"]
    for name, response in responses.items():
        assert response.content == reference.content, name
        assert response.status_code == reference.status_code, name
        assert set(response.headers.keys()) == set(reference.headers.keys()), name
    assert [m["To"] for m in mailbox.messages] == [CONTROL_EMAIL]


# --- eligible patients ---------------------------------------------------------------


async def test_self_reset_mails_a_set_up_link(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given an eligible patient who never had an account
    pid = await enabled_patient(api, staff.token)

    response = await post(api, "requestSelfReset", CLAIM)
    await api.deliver()

    assert response.json()["data"]["requestSelfReset"]["ok"] is True
    [message] = mailbox.to(EMAIL)
    assert message["Subject"] == "Set up your Maple Street Clinic patient portal account"
    token = token_from(message)
    assert token not in response.text
    info = (await api.gql(TOKEN_INFO, {"token": token}))["data"]["tokenInfo"]
    assert info["valid"] is True
    assert info["usernameRequired"] is True
    # a self-service link lives one hour
    expires = datetime.fromisoformat(info["expiresAt"])
    assert timedelta(minutes=59) < expires - utcnow() <= timedelta(hours=1)
    link = await LinkToken.get(patient_id=pk(pid))
    assert link.purpose.value == "self_service"
    assert link.sent_to == EMAIL


async def test_self_reset_of_an_account_with_a_password_mails_a_reset_link(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    result = await api.gql(
        SET_CREDENTIALS,
        {"input": {"patientId": pid, "username": USERNAME, "password": "staff-typed-pass-99"}},
        staff.token,
    )
    assert result["data"]["setCredentials"]["userErrors"] == []
    mailbox.clear()

    await post(api, "requestSelfReset", CLAIM)
    await api.deliver()

    [message] = [m for m in mailbox.to(EMAIL) if "#token=" in body_text(m)]
    assert message["Subject"] == "Reset your Maple Street Clinic patient portal password"
    info = (await api.gql(TOKEN_INFO, {"token": token_from(message)}))["data"]["tokenInfo"]
    assert (info["valid"], info["usernameRequired"], info["username"]) == (True, False, USERNAME)


async def test_username_reminder_mails_the_username_and_never_shows_it(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await eligible(api, staff)

    response = await post(api, "requestUsernameReminder", CLAIM)
    await api.deliver()

    assert response.json()["data"]["requestUsernameReminder"]["ok"] is True
    assert USERNAME not in response.text
    [message] = mailbox.to(EMAIL)
    assert message["Subject"] == "Your Maple Street Clinic patient portal username"
    assert f"Your username is: {USERNAME}" in body_text(message)
    assert "#token=" not in body_text(message)
    assert await LinkToken.all().count() == 0


async def test_username_reminder_without_an_account_sends_nothing(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await enabled_patient(api, staff.token)

    response = await post(api, "requestUsernameReminder", CLAIM)
    await api.deliver()

    assert response.json()["data"]["requestUsernameReminder"]["ok"] is True
    assert mailbox.messages == []


@pytest.mark.parametrize(
    ("on_file", "typed"),
    [
        ("00000", "90210"),  # the clinic's "no US ZIP": any ZIP
        ("00000", "SW1A 1AA"),
        ("02139-4307", "02139"),  # ZIP+4 compares on its first five digits
        ("02139-4307", "02139-9999"),
        ("021394307", "02139"),
        ("02139", "02139-4307"),
        ("SW1A 1AA", "sw1a1aa"),  # other postal codes ignore case and spaces
        ("K1A 0B1", " k1a 0b1 "),
    ],
)
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_zip_code_rules(
    api: Api, staff: Staff, mailbox: Mailbox, operation: str, on_file: str, typed: str
) -> None:
    await eligible(api, staff, zipCode=on_file)

    await post(api, operation, {**CLAIM, "zipCode": typed})
    await api.deliver()

    assert len(mailbox.to(EMAIL)) == 1


@pytest.mark.parametrize(
    ("on_file", "typed"),
    [("02139-4307", "02138"), ("02139", "0213"), ("SW1A 1AA", "SW1A 1AB"), ("02139", "")],
)
async def test_zip_code_mismatches(
    api: Api, staff: Staff, mailbox: Mailbox, on_file: str, typed: str
) -> None:
    await eligible(api, staff, zipCode=on_file)

    await post(api, "requestSelfReset", {**CLAIM, "zipCode": typed})
    await api.deliver()

    assert mailbox.messages == []


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_names_and_addresses_compare_case_insensitively(
    api: Api, staff: Staff, mailbox: Mailbox, operation: str
) -> None:
    await eligible(api, staff, lastName="O'Brien-Quinn", email="Avery.Quinn1@Example.com")

    await post(
        api,
        operation,
        {**CLAIM, "email": "  AVERY.QUINN1@EXAMPLE.COM ", "lastName": "o'brien-QUINN"},
    )
    await api.deliver()

    assert len(mailbox.messages) == 1
    assert mailbox.messages[0]["To"].lower() == EMAIL


async def test_prospective_chart_is_eligible(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    await eligible(api, staff, chartStatus="PROSPECTIVE")

    await post(api, "requestSelfReset", CLAIM)
    await api.deliver()

    assert len(mailbox.to(EMAIL)) == 1


async def test_same_address_in_another_practice_does_not_count_as_shared(
    api: Api, staff: Staff, other_staff: Staff, mailbox: Mailbox
) -> None:
    await eligible(api, staff)
    await create_patient(api, other_staff.token, n=1)  # same address, other clinic

    await post(api, "requestSelfReset", CLAIM)
    await api.deliver()

    assert len(mailbox.to(EMAIL)) == 1
    assert await LinkToken.all().count() == 1


# --- cool-down -----------------------------------------------------------------------


async def test_second_self_reset_within_the_cool_down_sends_no_second_link(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await eligible(api, staff)
    first = await post(api, "requestSelfReset", CLAIM)
    await api.deliver()
    [token] = links_in(mailbox.to(EMAIL))

    # when the patient asks again two minutes later
    with time_machine.travel(utcnow() + timedelta(minutes=2), tick=False):
        second = await post(api, "requestSelfReset", CLAIM)
        await api.deliver()

        # then the answer is the same, no second mail, and the first link still works
        assert second.content == first.content
        assert links_in(mailbox.to(EMAIL)) == [token]
        info = (await api.gql(TOKEN_INFO, {"token": token}))["data"]["tokenInfo"]
        assert info["valid"] is True
    throttled = await AuditEvent.filter(action="self_reset.requested", outcome="throttled")
    assert len(throttled) == 1

    # and after the cool-down a new link replaces the first
    with time_machine.travel(utcnow() + timedelta(minutes=6), tick=False):
        await post(api, "requestSelfReset", CLAIM)
        await api.deliver()
        tokens = links_in(mailbox.to(EMAIL))
        assert len(tokens) == 2
        assert (await api.gql(TOKEN_INFO, {"token": tokens[1]}))["data"]["tokenInfo"]["valid"]
        old = (await api.gql(TOKEN_INFO, {"token": token}))["data"]["tokenInfo"]
        assert old["error"] == "TOKEN_INVALID"


async def test_second_username_reminder_within_the_cool_down_sends_nothing(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await eligible(api, staff)
    await post(api, "requestUsernameReminder", CLAIM)
    await api.deliver()

    with time_machine.travel(utcnow() + timedelta(minutes=1), tick=False):
        await post(api, "requestUsernameReminder", CLAIM)
        await api.deliver()
        assert len(mailbox.to(EMAIL)) == 1

    with time_machine.travel(utcnow() + timedelta(minutes=6), tick=False):
        await post(api, "requestUsernameReminder", CLAIM)
        await api.deliver()
        assert len(mailbox.to(EMAIL)) == 2


# --- audit ---------------------------------------------------------------------------


async def test_requests_are_audited_without_the_typed_details(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await eligible(api, staff)

    await post(api, "requestSelfReset", CLAIM)
    await post(api, "requestSelfReset", {**CLAIM, "email": "stranger@example.com"})
    await api.deliver()

    # (the lookups run after the responses, in either order)
    events = await AuditEvent.filter(action="self_reset.requested").order_by("id")
    assert sorted((e.outcome, e.patient_id is not None) for e in events) == [
        ("no_link", False),
        ("queued", True),
    ]
    assert all(e.client_addr == "203.0.113.7" for e in events)
    text = repr([(e.detail, e.action, e.outcome) for e in events])
    assert "stranger" not in text and EMAIL not in text
