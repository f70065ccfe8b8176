"""Bulk by filter, dry run and idempotency keys (SPEC 7.2)."""

import asyncio

from models import LinkToken, Patient
from tests.conftest import Api, Mailbox, Staff
from tests.helpers import create_patient, enabled_patient, pk

SEND_BY_FILTER = """
mutation($input: SendInvitationInput!) {
  sendInvitation(input: $input) {
    dryRun
    results { requestedId patient { id } invitation { sentTo } userErrors { code } }
    userErrors { field code }
  }
}"""

ENABLE_BY_FILTER = """
mutation($input: EnablePortalInput!) {
  enablePortal(input: $input) {
    dryRun
    results { patient { id portalEnabled } userErrors { code } }
    userErrors { field code }
  }
}"""


async def test_invite_everyone_not_invited_yet_by_filter(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given two enabled patients never invited, one without email, one disabled
    a = await enabled_patient(api, staff.token, n=1)
    b = await enabled_patient(api, staff.token, n=2)
    await enabled_patient(api, staff.token, n=3, email=None)
    await create_patient(api, staff.token, n=4)
    # when staff invite by the Onboarding Tool's filter
    result = await api.gql(SEND_BY_FILTER, {"input": {"filter": {"status": ["NOT_INVITED"]}}}, staff.token)
    payload = result["data"]["sendInvitation"]
    # then exactly the two not-invited patients got one message each
    assert payload["userErrors"] == []
    assert sorted(r["patient"]["id"] for r in payload["results"]) == sorted([a, b])
    assert all(r["userErrors"] == [] for r in payload["results"])
    await api.deliver()
    assert len(mailbox.messages) == 2


async def test_dry_run_reports_and_changes_nothing(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await create_patient(api, staff.token)
    enable = await api.gql(ENABLE_BY_FILTER, {"input": {"patientIds": [pid], "dryRun": True}}, staff.token)
    assert enable["data"]["enablePortal"]["dryRun"] is True
    assert enable["data"]["enablePortal"]["results"][0]["userErrors"] == []
    assert not (await Patient.get(id=pk(pid))).portal_enabled

    await api.gql(ENABLE_BY_FILTER, {"input": {"patientIds": [pid]}}, staff.token)
    send = await api.gql(SEND_BY_FILTER, {"input": {"patientIds": [pid], "dryRun": True}}, staff.token)
    row = send["data"]["sendInvitation"]["results"][0]
    assert row["invitation"]["sentTo"] == "avery.quinn1@example.com"
    await api.deliver()
    assert mailbox.messages == []
    assert await LinkToken.all().count() == 0


async def test_same_idempotency_key_sends_once_even_when_concurrent(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    variables = {"input": {"patientIds": [pid], "idempotencyKey": "click-7f3a"}}
    # when the same request arrives three times, twice at once
    first, second = await asyncio.gather(
        api.gql(SEND_BY_FILTER, variables, staff.token), api.gql(SEND_BY_FILTER, variables, staff.token)
    )
    third = await api.gql(SEND_BY_FILTER, variables, staff.token)
    # then all answer the same and one link and one message exist
    for result in (first, second, third):
        assert result["data"]["sendInvitation"]["results"][0]["invitation"]["sentTo"] == "avery.quinn1@example.com"
    assert await LinkToken.all().count() == 1
    await api.deliver()
    assert len(mailbox.messages) == 1


async def test_idempotency_key_reused_for_another_request_is_refused(api: Api, staff: Staff) -> None:
    a = await enabled_patient(api, staff.token, n=1)
    b = await enabled_patient(api, staff.token, n=2)
    await api.gql(SEND_BY_FILTER, {"input": {"patientIds": [a], "idempotencyKey": "k1"}}, staff.token)
    result = await api.gql(SEND_BY_FILTER, {"input": {"patientIds": [b], "idempotencyKey": "k1"}}, staff.token)
    assert result["data"]["sendInvitation"]["userErrors"] == [{"field": ["idempotencyKey"], "code": "INVALID_INPUT"}]
    assert result["data"]["sendInvitation"]["results"] == []
    assert await LinkToken.filter(patient_id=pk(b)).count() == 0


async def test_ids_and_filter_together_or_neither_are_refused(api: Api, staff: Staff) -> None:
    pid = await create_patient(api, staff.token)
    both = await api.gql(ENABLE_BY_FILTER, {"input": {"patientIds": [pid], "filter": {"hasEmail": True}}}, staff.token)
    neither = await api.gql(ENABLE_BY_FILTER, {"input": {}}, staff.token)
    for result in (both, neither):
        assert result["data"]["enablePortal"]["userErrors"] == [{"field": ["patientIds"], "code": "INVALID_INPUT"}]
    assert not (await Patient.get(id=pk(pid))).portal_enabled


async def test_enable_by_filter_enables_the_selection(api: Api, staff: Staff) -> None:
    a = await create_patient(api, staff.token, n=1)
    await create_patient(api, staff.token, n=2, email=None)
    result = await api.gql(ENABLE_BY_FILTER, {"input": {"filter": {"hasEmail": True}}}, staff.token)
    rows = result["data"]["enablePortal"]["results"]
    assert [r["patient"]["id"] for r in rows] == [a]
    assert rows[0]["patient"]["portalEnabled"] is True


SEND_WITH_FRAGMENTS = """
mutation($ids: [ID!]!) {
  sendInvitation(input: {patientIds: $ids}) { ...Payload }
}
fragment Payload on SendInvitationPayload { results { ... on InvitationResult { ...Row } } }
fragment Row on InvitationResult { requestedId patient { id portalStatus } }"""
SEND_IDS_ONLY = """
mutation($ids: [ID!]!) {
  sendInvitation(input: {patientIds: $ids}) { results { requestedId userErrors { code } } }
}"""


async def test_bulk_answer_reads_patients_only_when_the_document_asks(api: Api, staff: Staff) -> None:
    # given two enabled patients
    a = await enabled_patient(api, staff.token, n=1)
    b = await enabled_patient(api, staff.token, n=2)
    # when the patient is asked for through fragments, it is there, as it is after the change
    result = await api.gql(SEND_WITH_FRAGMENTS, {"ids": [a]}, staff.token)
    [row] = result["data"]["sendInvitation"]["results"]
    assert row["patient"] == {"id": a, "portalStatus": "INVITED"}
    # and an answer asking for ids and errors only acts the same (without reading patients)
    result = await api.gql(SEND_IDS_ONLY, {"ids": [b, "nope"]}, staff.token)
    rows = result["data"]["sendInvitation"]["results"]
    assert [r["requestedId"] for r in rows] == [b, "nope"]
    assert [[e["code"] for e in r["userErrors"]] for r in rows] == [[], ["NOT_FOUND"]]
    assert await LinkToken.filter(patient_id=pk(b)).count() == 1
