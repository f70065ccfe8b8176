"""sendInvitation (SPEC 2.2, 2.3, 2.5, 3 "Link tokens", 7.2): per-patient results, the
link that the mail carries, revocation, bulk sending and the statuses it moves through."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

import time_machine

from core.clock import utcnow
from models import LinkToken, Patient
from tests.conftest import Api, Mailbox, Staff, body_text, token_from
from tests.helpers import (
    PATIENT,
    REDEEM,
    STRONG_PASSWORD,
    create_patient,
    enabled_patient,
    invite,
)

SEND_FULL = """
mutation($ids: [ID!]!, $confirm: Boolean, $dryRun: Boolean) {
  sendInvitation(input: {patientIds: $ids, confirmSharedEmail: $confirm, dryRun: $dryRun}) {
    dryRun
    results { requestedId patient { id portalStatus emailSharedWith }
              invitation { sentTo expiresAt reset } userErrors { field code } }
    userErrors { code }
  }
}"""

TOKEN_INFO = """
query($token: String!) {
  tokenInfo(token: $token) { valid error usernameRequired username expiresAt }
}"""

UPDATE = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id email portalStatus } userErrors { code } }
}"""

DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) {
    results { patient { id portalEnabled portalStatus } userErrors { code } }
  }
}"""

ENABLE = """
mutation($ids: [ID!]!) {
  enablePortal(input: {patientIds: $ids}) {
    results { patient { id portalEnabled portalStatus } userErrors { code } }
  }
}"""

ONBOARDING = """
query($filter: OnboardingFilter) {
  onboarding(first: 50, filter: $filter) {
    totalCount
    statusCounts { status count }
    edges { node { id portalStatus } }
  }
}"""


async def send(api: Api, token: str, ids: list[str], **variables: Any) -> dict[str, Any]:
    result = await api.gql(SEND_FULL, {"ids": ids, **variables}, token)
    assert "errors" not in result, result
    return result["data"]["sendInvitation"]


async def token_info(api: Api, token: str) -> dict[str, Any]:
    result = await api.gql(TOKEN_INFO, {"token": token})
    return result["data"]["tokenInfo"]


async def patient(api: Api, token: str, pid: str) -> dict[str, Any]:
    return (await api.gql(PATIENT, {"id": pid}, token))["data"]["patient"]


async def status_counts(api: Api, token: str) -> dict[str, int]:
    data = (await api.gql(ONBOARDING, {}, token))["data"]["onboarding"]
    return {c["status"]: c["count"] for c in data["statusCounts"] if c["count"]}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def codes(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result["userErrors"]


# --- success -------------------------------------------------------------------------


async def test_send_invitation_mails_a_link_to_the_address_on_file(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given an enabled patient with an email on file
    pid = await enabled_patient(api, staff.token)

    # when staff send the invitation
    before = utcnow()
    payload = await send(api, staff.token, [pid])
    await api.deliver()

    # then one result names the address and a 24 hour expiry, and never the token
    [row] = payload["results"]
    assert row["userErrors"] == []
    assert row["requestedId"] == pid
    assert row["invitation"]["sentTo"] == "avery.quinn1@example.com"
    assert row["invitation"]["reset"] is False
    expires = parse_time(row["invitation"]["expiresAt"])
    assert before + timedelta(hours=24) - timedelta(minutes=1) <= expires
    assert expires <= utcnow() + timedelta(hours=24)
    assert payload["dryRun"] is False
    assert row["patient"]["portalStatus"] == "INVITED"
    # and exactly one mail, with a link in the fragment of PORTAL_LINK_BASE_URL
    [message] = mailbox.to("avery.quinn1@example.com")
    token = token_from(message)
    assert f"https://portal.clinic.test/activate#token={token}" in body_text(message)
    assert len(token) >= 22  # >= 128 bits, URL-safe base64
    info = await token_info(api, token)
    assert info["valid"] is True
    assert info["error"] is None
    assert info["usernameRequired"] is True
    assert parse_time(info["expiresAt"]) == expires
    # and the patient's last invitation records it
    last = (await patient(api, staff.token, pid))["lastInvitation"]
    assert last["sentTo"] == "avery.quinn1@example.com"
    assert last["deliveryStatus"] == "SENT"
    assert last["usedAt"] is None


# --- per-patient errors ------------------------------------------------------------


async def test_portal_not_enabled_answers_portal_disabled(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await create_patient(api, staff.token)

    payload = await send(api, staff.token, [pid])
    await api.deliver()

    [row] = payload["results"]
    assert row["userErrors"] == [{"field": ["patientIds", "0"], "code": "PORTAL_DISABLED"}]
    assert row["invitation"] is None
    assert row["patient"]["portalStatus"] == "DISABLED"
    assert mailbox.messages == []
    assert await LinkToken.all().count() == 0


async def test_no_email_on_file(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await enabled_patient(api, staff.token, email=None)

    payload = await send(api, staff.token, [pid])
    await api.deliver()

    [row] = payload["results"]
    assert row["userErrors"] == [{"field": ["patientIds", "0"], "code": "NO_EMAIL_ON_FILE"}]
    assert row["invitation"] is None
    assert row["patient"]["portalStatus"] == "NO_EMAIL"
    assert mailbox.messages == []


async def test_inactive_and_deceased_charts_answer_inactive_patient(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given one chart created inactive and one that died after portal access was enabled
    inactive = await create_patient(api, staff.token, n=1, chartStatus="INACTIVE")
    deceased = await enabled_patient(api, staff.token, n=2)
    updated = await api.gql(
        UPDATE, {"input": {"id": deceased, "chartStatus": "DECEASED"}}, staff.token
    )
    assert updated["data"]["updatePatient"]["userErrors"] == []

    payload = await send(api, staff.token, [inactive, deceased])
    await api.deliver()

    assert [r["userErrors"] for r in payload["results"]] == [
        [{"field": ["patientIds", "0"], "code": "INACTIVE_PATIENT"}],
        [{"field": ["patientIds", "1"], "code": "INACTIVE_PATIENT"}],
    ]
    assert [r["invitation"] for r in payload["results"]] == [None, None]
    assert mailbox.messages == []


async def test_unknown_and_foreign_ids_answer_not_found(
    api: Api, staff: Staff, other_staff: Staff, mailbox: Mailbox
) -> None:
    foreign = await enabled_patient(api, other_staff.token)

    payload = await send(api, staff.token, [foreign, "999999", "not-an-id"])
    await api.deliver()

    assert [(r["requestedId"], r["patient"], r["userErrors"]) for r in payload["results"]] == [
        (foreign, None, [{"field": ["patientIds", "0"], "code": "NOT_FOUND"}]),
        ("999999", None, [{"field": ["patientIds", "1"], "code": "NOT_FOUND"}]),
        ("not-an-id", None, [{"field": ["patientIds", "2"], "code": "NOT_FOUND"}]),
    ]
    assert mailbox.messages == []


async def test_one_bad_row_does_not_fail_the_batch(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    good = await enabled_patient(api, staff.token, n=1)
    disabled = await create_patient(api, staff.token, n=2)

    payload = await send(api, staff.token, [disabled, good])
    await api.deliver()

    assert [r["userErrors"] for r in payload["results"]] == [
        [{"field": ["patientIds", "0"], "code": "PORTAL_DISABLED"}],
        [],
    ]
    assert payload["results"][1]["invitation"]["sentTo"] == "avery.quinn1@example.com"
    assert [m["To"] for m in mailbox.messages] == ["avery.quinn1@example.com"]


# --- shared (family) addresses -------------------------------------------------------


async def test_shared_address_needs_confirmation(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given two charts with the same address (a family address)
    family = "the.quinns@example.com"
    first = await enabled_patient(api, staff.token, n=1, email=family)
    second = await enabled_patient(api, staff.token, n=2, email=family.upper())

    # when staff send without confirming
    refused = await send(api, staff.token, [first])
    await api.deliver()

    # then nothing is sent and staff are told why
    [row] = refused["results"]
    assert row["userErrors"] == [{"field": ["patientIds", "0"], "code": "EMAIL_SHARED"}]
    assert row["invitation"] is None
    assert row["patient"]["emailSharedWith"] == 1
    assert mailbox.messages == []
    assert (await patient(api, staff.token, second))["emailSharedWith"] == 1

    # when they confirm, the mail goes to the shared address
    confirmed = await send(api, staff.token, [first], confirm=True)
    await api.deliver()
    [row] = confirmed["results"]
    assert row["userErrors"] == []
    assert row["invitation"]["sentTo"] == family
    assert len(mailbox.to(family)) == 1


async def test_email_shared_with_counts_other_charts_of_the_practice_only(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    address = "shared@example.com"
    a = await create_patient(api, staff.token, n=1, email=address)
    await create_patient(api, staff.token, n=2, email=address)
    await create_patient(api, staff.token, n=3, email="Shared@Example.com")
    await create_patient(api, other_staff.token, n=4, email=address)
    alone = await create_patient(api, staff.token, n=5)
    no_email = await create_patient(api, staff.token, n=6, email=None)

    assert (await patient(api, staff.token, a))["emailSharedWith"] == 2
    assert (await patient(api, staff.token, alone))["emailSharedWith"] == 0
    assert (await patient(api, staff.token, no_email))["emailSharedWith"] == 0


# --- dry run -------------------------------------------------------------------------


async def test_dry_run_reports_and_sends_nothing(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    good = await enabled_patient(api, staff.token, n=1)
    disabled = await create_patient(api, staff.token, n=2)

    payload = await send(api, staff.token, [good, disabled], dryRun=True)
    await api.deliver()

    assert payload["dryRun"] is True
    assert [r["userErrors"] for r in payload["results"]] == [
        [],
        [{"field": ["patientIds", "1"], "code": "PORTAL_DISABLED"}],
    ]
    assert payload["results"][0]["invitation"]["sentTo"] == "avery.quinn1@example.com"
    assert payload["results"][0]["patient"]["portalStatus"] == "NOT_INVITED"
    assert mailbox.messages == []
    assert await LinkToken.all().count() == 0
    assert (await patient(api, staff.token, good))["lastInvitation"] is None


# --- revocation ----------------------------------------------------------------------


async def test_a_newer_link_revokes_the_older_one(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await enabled_patient(api, staff.token)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    old = token_from(mailbox.to("avery.quinn1@example.com")[0])
    mailbox.clear()

    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    new = token_from(mailbox.to("avery.quinn1@example.com")[0])

    assert old != new
    assert await token_info(api, old) == {
        "valid": False,
        "error": "TOKEN_INVALID",
        "usernameRequired": False,
        "username": None,
        "expiresAt": None,
    }
    refused = await api.gql(
        REDEEM, {"input": {"token": old, "username": "avery.q", "password": STRONG_PASSWORD}}
    )
    assert refused["data"]["redeemToken"] == {
        "account": None,
        "userErrors": [{"field": ["token"], "code": "TOKEN_INVALID"}],
    }
    redeemed = await api.gql(
        REDEEM, {"input": {"token": new, "username": "avery.q", "password": STRONG_PASSWORD}}
    )
    assert redeemed["data"]["redeemToken"] == {"account": {"username": "avery.q"}, "userErrors": []}


async def test_changing_the_email_revokes_outstanding_links(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])

    updated = await api.gql(
        UPDATE, {"input": {"id": pid, "email": "new.address@example.com"}}, staff.token
    )

    assert updated["data"]["updatePatient"]["userErrors"] == []
    assert updated["data"]["updatePatient"]["patient"]["portalStatus"] == "INVITATION_EXPIRED"
    info = await token_info(api, token)
    assert (info["valid"], info["error"]) == (False, "TOKEN_INVALID")
    # and the next invitation goes to the new address
    assert (await invite(api, staff.token, pid))["invitation"]["sentTo"] == (
        "new.address@example.com"
    )


async def test_changing_only_the_case_of_the_email_keeps_the_link(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])

    await api.gql(UPDATE, {"input": {"id": pid, "email": "Avery.Quinn1@example.com"}}, staff.token)

    assert (await token_info(api, token))["valid"] is True


async def test_disabling_the_portal_revokes_outstanding_links(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])

    disabled = await api.gql(DISABLE, {"ids": [pid]}, staff.token)
    assert disabled["data"]["disablePortal"]["results"][0]["userErrors"] == []
    assert (await token_info(api, token))["error"] == "TOKEN_INVALID"

    # re-enabling does not bring the old link back
    enabled = await api.gql(ENABLE, {"ids": [pid]}, staff.token)
    assert enabled["data"]["enablePortal"]["results"][0]["patient"]["portalStatus"] == (
        "INVITATION_EXPIRED"
    )
    info = await token_info(api, token)
    assert (info["valid"], info["error"]) == (False, "TOKEN_INVALID")
    refused = await api.gql(
        REDEEM, {"input": {"token": token, "username": "avery.q", "password": STRONG_PASSWORD}}
    )
    assert refused["data"]["redeemToken"]["userErrors"] == [
        {"field": ["token"], "code": "TOKEN_INVALID"}
    ]


# --- bulk ----------------------------------------------------------------------------


async def test_bulk_invitation_of_500_patients_sends_500_distinct_links(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given 500 enabled charts (written directly: the subject here is the send)
    charts = []
    for n in range(500):
        chart = Patient(
            practice_id=staff.practice_id,
            chart_number=f"B{n:05d}",
            first_name="Bulk",
            last_name=f"Patient{n:03d}",
            date_of_birth=date(1970, 1, 1),
            email=f"bulk{n}@example.com",
            zip_code="02139",
            portal_enabled=True,
        )
        chart.normalise_keys()
        charts.append(chart)
    await Patient.bulk_create(charts)
    ids = [
        str(i)
        for i in await Patient.filter(practice_id=staff.practice_id).values_list("id", flat=True)
    ]
    assert len(ids) == 500

    # when staff invite them all in one call
    payload = await send(api, staff.token, ids)
    await api.deliver()

    # then each row succeeded, each patient got one mail with its own token
    assert len(payload["results"]) == 500
    assert all(r["userErrors"] == [] for r in payload["results"])
    assert [r["requestedId"] for r in payload["results"]] == ids
    assert len(mailbox.messages) == 500
    addresses = {m["To"] for m in mailbox.messages}
    assert addresses == {f"bulk{n}@example.com" for n in range(500)}
    tokens = [token_from(m) for m in mailbox.messages]
    assert len(set(tokens)) == 500
    assert await LinkToken.filter(used_at=None, revoked_at=None).count() == 500
    # and each token opens its own patient's link
    sample = mailbox.to("bulk123@example.com")[0]
    info = await token_info(api, token_from(sample))
    assert info["valid"] is True
    counts = await status_counts(api, staff.token)
    assert counts == {"INVITED": 500}


async def test_repeated_id_sends_one_message(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await enabled_patient(api, staff.token)

    payload = await send(api, staff.token, [pid, pid])
    await api.deliver()

    assert [r["userErrors"] for r in payload["results"]] == [[], []]
    assert len(mailbox.messages) == 1
    assert (await token_info(api, token_from(mailbox.messages[0])))["valid"] is True


# --- wording -------------------------------------------------------------------------


async def test_wording_differs_between_first_set_up_and_reset(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a patient who never had an account
    pid = await enabled_patient(api, staff.token)
    first = await invite(api, staff.token, pid)
    await api.deliver()
    [setup_mail] = mailbox.to("avery.quinn1@example.com")

    # then the first mail invites to set up a username and password
    assert first["invitation"]["reset"] is False
    assert (
        setup_mail["Subject"]
        == "Welcome to the Maple Street Clinic patient portal: set up your account"
    )
    setup_text = body_text(setup_mail)
    assert "choose a username and password" in setup_text
    assert "reset" not in setup_text.lower()

    # when the patient sets a password and staff send again
    redeemed = await api.gql(
        REDEEM,
        {
            "input": {
                "token": token_from(setup_mail),
                "username": "avery.q",
                "password": STRONG_PASSWORD,
            }
        },
    )
    assert redeemed["data"]["redeemToken"]["userErrors"] == []
    mailbox.clear()
    second = await invite(api, staff.token, pid)
    await api.deliver()
    [reset_mail] = [m for m in mailbox.to("avery.quinn1@example.com") if "#token=" in str(m)]

    # then it is a reset mail
    assert second["invitation"]["reset"] is True
    assert reset_mail["Subject"] == "Reset your Maple Street Clinic patient portal password"
    reset_text = body_text(reset_mail)
    assert "choose a new password" in reset_text
    assert "choose a username" not in reset_text


# --- statuses ------------------------------------------------------------------------


async def test_status_moves_from_not_invited_to_invited_to_expired(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given an enabled patient never invited, a disabled one and one without email
    pid = await enabled_patient(api, staff.token, n=1)
    await create_patient(api, staff.token, n=2)
    await enabled_patient(api, staff.token, n=3, email=None)
    assert (await patient(api, staff.token, pid))["portalStatus"] == "NOT_INVITED"
    assert await status_counts(api, staff.token) == {
        "NOT_INVITED": 1,
        "DISABLED": 1,
        "NO_EMAIL": 1,
    }

    # when staff invite
    await invite(api, staff.token, pid)
    await api.deliver()

    # then the patient is INVITED
    assert (await patient(api, staff.token, pid))["portalStatus"] == "INVITED"
    assert await status_counts(api, staff.token) == {"INVITED": 1, "DISABLED": 1, "NO_EMAIL": 1}
    filtered = await api.gql(ONBOARDING, {"filter": {"status": ["INVITED"]}}, staff.token)
    onboarding = filtered["data"]["onboarding"]
    assert onboarding["totalCount"] == 1
    assert [e["node"]["id"] for e in onboarding["edges"]] == [pid]
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])

    # when the 24 hours pass unused
    with time_machine.travel(utcnow() + timedelta(hours=24, minutes=1), tick=False):
        # then the status is INVITATION_EXPIRED, in the list and its counts
        assert (await patient(api, staff.token, pid))["portalStatus"] == "INVITATION_EXPIRED"
        assert await status_counts(api, staff.token) == {
            "INVITATION_EXPIRED": 1,
            "DISABLED": 1,
            "NO_EMAIL": 1,
        }
        expired = await api.gql(
            ONBOARDING, {"filter": {"status": ["INVITATION_EXPIRED"]}}, staff.token
        )
        assert [e["node"]["id"] for e in expired["data"]["onboarding"]["edges"]] == [pid]
        info = await token_info(api, token)
        assert (info["valid"], info["error"]) == (False, "TOKEN_EXPIRED")

        # and a fresh invitation makes the patient INVITED again
        await invite(api, staff.token, pid)
        assert (await patient(api, staff.token, pid))["portalStatus"] == "INVITED"


async def test_link_is_still_valid_just_before_24_hours(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await api.deliver()
    token = token_from(mailbox.to("avery.quinn1@example.com")[0])

    with time_machine.travel(utcnow() + timedelta(hours=23, minutes=59), tick=False):
        assert (await token_info(api, token))["valid"] is True
        assert (await patient(api, staff.token, pid))["portalStatus"] == "INVITED"


async def test_concurrent_sends_leave_one_usable_link(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given staff double-click "send" (two requests at once)
    pid = await enabled_patient(api, staff.token)

    results = await asyncio.gather(*(send(api, staff.token, [pid]) for _ in range(5)))
    await api.deliver()

    # then each request answered, and only the newest link opens anything
    assert all(r["results"][0]["userErrors"] == [] for r in results)
    assert await LinkToken.filter(used_at=None, revoked_at=None).count() == 1
    valid = [t for t in map(token_from, mailbox.messages) if (await token_info(api, t))["valid"]]
    assert len(valid) == 1
