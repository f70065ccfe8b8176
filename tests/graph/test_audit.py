"""The audit log (SPEC section 3): every staff action is recorded with the staff user,
practice, patient, action, UTC time and client address; staff read it newest first with
cursor pagination; no password, token or link ever lands in it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import time_machine
from tortoise import connections

from models import ActorType, AuditEvent
from tests.conftest import Api, Mailbox, Staff, token_from
from tests.helpers import LOGIN, REDEEM, STRONG_PASSWORD, create_patient, enabled_patient, pk

AUDIT = """
query($patientId: ID, $first: Int, $after: String) {
  auditEvents(patientId: $patientId, first: $first, after: $after) {
    edges { cursor node {
      id action actorType actorId patientId outcome occurredAt clientAddress requestId
    } }
    pageInfo { endCursor hasNextPage }
  }
}"""

UPDATE = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id } userErrors { code } }
}"""

ENABLE = """
mutation($ids: [ID!]!) {
  enablePortal(input: {patientIds: $ids}) { results { userErrors { code } } userErrors { code } }
}"""

DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) { results { userErrors { code } } userErrors { code } }
}"""

SEND = """
mutation($ids: [ID!]!) {
  sendInvitation(input: {patientIds: $ids}) { results { userErrors { code } } userErrors { code } }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username } userErrors { code } }
}"""

CLIENT = "203.0.113.7"
FROZEN = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
STAFF_PASSWORD = "copper-meadow-violin-58"


async def ok(api: Api, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    result = await api.gql(query, variables, token)
    assert "errors" not in result, result
    payload = next(iter(result["data"].values()))
    assert payload["userErrors"] == [], payload
    for row in payload.get("results", []):
        assert row["userErrors"] == [], payload
    return payload


async def events_of(practice_id: int) -> list[AuditEvent]:
    return await AuditEvent.filter(practice_id=practice_id).order_by("id")


async def walk(api: Api, token: str, first: int, patient_id: str | None = None) -> list[dict]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        result = await api.gql(
            AUDIT, {"first": first, "after": after, "patientId": patient_id}, token
        )
        assert "errors" not in result, result
        conn = result["data"]["auditEvents"]
        nodes.extend(e["node"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes
        assert len(conn["edges"]) == first
        after = conn["pageInfo"]["endCursor"]


async def test_every_staff_action_is_audited(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    with time_machine.travel(FROZEN, tick=False):
        # given staff who create, edit, enable, invite, set credentials and disable
        pid = await create_patient(api, staff.token, n=1)
        other = await create_patient(api, staff.token, n=2, email=None)
        await ok(api, UPDATE, {"input": {"id": pid, "lastName": "Rivera"}}, staff.token)
        await ok(api, ENABLE, {"ids": [pid, other]}, staff.token)
        await ok(api, SEND, {"ids": [pid]}, staff.token)
        await ok(
            api,
            SET_CREDENTIALS,
            {"input": {"patientId": other, "username": "b.q", "password": STAFF_PASSWORD}},
            staff.token,
        )
        # (a forwarded-for header from an untrusted peer changes nothing)
        forwarded = {"X-Forwarded-For": "198.51.100.9"}
        result = await api.gql(DISABLE, {"ids": [pid]}, staff.token, **forwarded)
        assert result["data"]["disablePortal"]["results"][0]["userErrors"] == []

    # then each action left one event naming the staff user, practice, patient, UTC time
    # and client address
    events = await events_of(staff.practice_id)
    assert [(e.action, e.patient_id) for e in events] == [
        ("patient.created", pk(pid)),
        ("patient.created", pk(other)),
        ("patient.updated", pk(pid)),
        ("portal.enabled", pk(pid)),
        ("portal.enabled", pk(other)),
        ("invitation.sent", pk(pid)),
        ("credentials.set", pk(other)),
        ("portal.disabled", pk(pid)),
    ]
    for event in events:
        assert event.actor_type == ActorType.STAFF
        assert event.actor_id == staff.staff_id
        assert event.practice_id == staff.practice_id
        assert event.client_addr == CLIENT
        assert event.outcome == "success"
        assert event.request_id
        assert event.occurred_at == FROZEN
        assert event.occurred_at.utcoffset() is not None
        assert event.occurred_at.utcoffset().total_seconds() == 0
    # one request, one request id: the bulk enable's two events share it
    assert events[3].request_id == events[4].request_id
    assert events[2].request_id != events[3].request_id
    assert events[2].detail == {"fields": ["last_name"]}


async def test_audit_events_read_through_graphql(api: Api, staff: Staff) -> None:
    with time_machine.travel(FROZEN, tick=False):
        pid = await enabled_patient(api, staff.token, n=1)
    nodes = await walk(api, staff.token, first=50)
    assert [n["action"] for n in nodes] == ["portal.enabled", "patient.created"]
    for node in nodes:
        assert node["actorType"] == "STAFF"
        assert node["actorId"] == str(staff.staff_id)
        assert node["patientId"] == pid
        assert node["outcome"] == "success"
        assert node["clientAddress"] == CLIENT
        assert node["requestId"]
        assert datetime.fromisoformat(node["occurredAt"]) == FROZEN
        assert node["occurredAt"].endswith("+00:00")


async def test_audit_events_pagination_walks_newest_first(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    # given 7 patients of the practice, each created, enabled then disabled (21 events),
    # and another practice's events in between
    ids = []
    for n in range(7):
        ids.append(await enabled_patient(api, staff.token, n=n))
        await enabled_patient(api, other_staff.token, n=n)
    await ok(api, DISABLE, {"ids": ids}, staff.token)
    expected = [e.id for e in reversed(await events_of(staff.practice_id))]
    assert len(expected) == 21

    # when staff walk the log in pages of 4 (and of 1, and all at once)
    for first in (4, 1, 21, 200):
        nodes = await walk(api, staff.token, first=first)
        # then every event once, newest first
        assert [pk(n["id"]) for n in nodes] == expected, first

    # and per patient
    nodes = await walk(api, staff.token, first=2, patient_id=ids[3])
    assert [n["action"] for n in nodes] == ["portal.disabled", "portal.enabled", "patient.created"]
    assert {n["patientId"] for n in nodes} == {ids[3]}


async def test_audit_event_edges_carry_their_cursors(api: Api, staff: Staff) -> None:
    for n in range(3):
        await create_patient(api, staff.token, n=n)
    first = await api.gql(AUDIT, {"first": 3}, staff.token)
    edges = first["data"]["auditEvents"]["edges"]
    # resuming after any edge's cursor gives exactly the events after it
    for index, edge in enumerate(edges):
        rest = await api.gql(AUDIT, {"first": 10, "after": edge["cursor"]}, staff.token)
        assert [e["node"]["id"] for e in rest["data"]["auditEvents"]["edges"]] == [
            e["node"]["id"] for e in edges[index + 1 :]
        ]


async def test_no_password_token_or_link_in_the_audit_log(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given staff who set a password by hand, and a patient who redeems a link and logs in
    # (with a wrong password first)
    first = await enabled_patient(api, staff.token, n=1, email=None)
    await ok(
        api,
        SET_CREDENTIALS,
        {"input": {"patientId": first, "username": "first.q", "password": STAFF_PASSWORD}},
        staff.token,
    )
    second = await enabled_patient(api, staff.token, n=2)
    await ok(api, SEND, {"ids": [second]}, staff.token)
    await api.deliver()
    [message] = mailbox.to("avery.quinn2@example.com")
    token = token_from(message)
    redeemed = await api.gql(
        REDEEM, {"input": {"token": token, "username": "second.q", "password": STRONG_PASSWORD}}
    )
    assert redeemed["data"]["redeemToken"]["userErrors"] == []
    wrong = "wrong-" + STRONG_PASSWORD
    await api.gql(LOGIN, {"u": "second.q", "p": wrong})
    await api.gql(LOGIN, {"u": "second.q", "p": STRONG_PASSWORD})
    await api.gql(LOGIN, {"u": "nobody.here", "p": STAFF_PASSWORD})

    # then the log holds these events, and none of the secrets in any column
    conn = connections.get("default")
    rows = await conn.execute_query_dict("SELECT * FROM audit_event")
    actions = {r["action"] for r in rows}
    assert {"credentials.set", "invitation.sent"} <= actions
    assert len(rows) >= 8
    text = json.dumps(rows, default=str)
    for secret in (STAFF_PASSWORD, STRONG_PASSWORD, wrong, token, "#token=", "activate"):
        assert secret not in text, secret
    # and neither do the details staff can read
    nodes = await walk(api, staff.token, first=200)
    assert STAFF_PASSWORD not in json.dumps(nodes)
    assert token not in json.dumps(nodes)
