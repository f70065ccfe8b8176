"""SPEC 8.2 and 8.3: Node, node/nodes, global ids, full PageInfo, backwards paging, and
sealed cursors that carry the sort key."""

from __future__ import annotations

import base64
import json
from typing import Any

from core.sealing import Sealer
from graph.ids import global_id
from tests.conftest import Api, Staff
from tests.helpers import ENABLE, create_patient, invite, pk

LIST = """
query($first: Int, $after: String, $last: Int, $before: String) {
  onboarding(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id lastName } }
    pageInfo { startCursor endCursor hasNextPage hasPreviousPage }
  }
}"""

NODE = """
query($id: ID!) { node(id: $id) { __typename id
  ... on Patient { lastName } ... on AuditEvent { action } ... on Invitation { sentTo } } }"""

NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"

RENAME = """
mutation($id: ID!, $last: String!) {
  updatePatient(input: {id: $id, lastName: $last}) { patient { id } userErrors { code } }
}"""


async def list_page(api: Api, token: str, **variables: Any) -> dict[str, Any]:
    result = await api.gql(LIST, variables, token)
    assert "errors" not in result, result
    return result["data"]["onboarding"]


async def test_ids_are_global_and_distinct_across_types(api: Api, staff: Staff) -> None:
    # one patient and its creation event, both row 1 in their tables
    pid = await create_patient(api, staff.token)
    events = await api.gql("{ auditEvents { edges { node { id patientId } } } }", token=staff.token)
    [event] = [e["node"] for e in events["data"]["auditEvents"]["edges"]]
    assert pk(pid) == pk(event["id"]) == 1
    # a normalised client store keys by id: the two must differ (Relay merged them before)
    assert pid != event["id"]
    assert event["patientId"] == pid
    # opaque ids name no chart data
    assert "Quinn" not in base64.b64decode(pid).decode()


async def test_node_and_nodes_resolve_every_type_of_the_practice_only(
    api: Api, staff: Staff, other_staff: Staff, mailbox
) -> None:
    pid = await create_patient(api, staff.token, lastName="Okafor")
    await api.gql(ENABLE, {"ids": [pid]}, staff.token)
    await invite(api, staff.token, pid)
    patient = await api.gql(
        "query($id: ID!) { patient(id: $id) { lastInvitation { id } } }", {"id": pid}, staff.token
    )
    invitation_id = patient["data"]["patient"]["lastInvitation"]["id"]
    events = await api.gql("{ auditEvents(first: 1) { edges { node { id } } } }", token=staff.token)
    event_id = events["data"]["auditEvents"]["edges"][0]["node"]["id"]

    node = (await api.gql(NODE, {"id": pid}, staff.token))["data"]["node"]
    assert node == {"__typename": "Patient", "id": pid, "lastName": "Okafor"}
    node = (await api.gql(NODE, {"id": invitation_id}, staff.token))["data"]["node"]
    assert node["__typename"] == "Invitation" and node["sentTo"] == "avery.quinn1@example.com"
    node = (await api.gql(NODE, {"id": event_id}, staff.token))["data"]["node"]
    assert node["__typename"] == "AuditEvent" and node["id"] == event_id

    unknown = [global_id("Patient", 999), "not-an-id", "1", base64.b64encode(b"Staff:1").decode()]
    result = await api.gql(NODES, {"ids": [invitation_id, *unknown, pid]}, staff.token)
    assert [n and n["__typename"] for n in result["data"]["nodes"]] == [
        "Invitation", None, None, None, None, "Patient",
    ]
    # another practice's staff: every one of them reads as unknown (tenancy)
    result = await api.gql(NODES, {"ids": [pid, invitation_id, event_id]}, other_staff.token)
    assert result["data"]["nodes"] == [None, None, None]
    # and anonymous callers are refused
    result = await api.gql(NODE, {"id": pid})
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_deprecated_decimal_ids_are_still_accepted(api: Api, staff: Staff) -> None:
    pid = await create_patient(api, staff.token)
    legacy = str(pk(pid))
    # bulk results echo each id as the client sent it
    result = await api.gql(ENABLE, {"ids": [legacy, pid, "nope"]}, staff.token)
    rows = result["data"]["enablePortal"]["results"]
    assert [r["requestedId"] for r in rows] == [legacy, pid, "nope"]
    assert rows[0]["patient"]["id"] == pid
    assert [r["userErrors"] for r in rows][2] == [{"field": ["patientIds", "2"], "code": "NOT_FOUND"}]
    renamed = await api.gql(RENAME, {"id": legacy, "last": "Renamed"}, staff.token)
    assert renamed["data"]["updatePatient"] == {"patient": {"id": pid}, "userErrors": []}
    found = await api.gql("query($id: ID!) { patient(id: $id) { id } }", {"id": legacy}, staff.token)
    assert found["data"]["patient"] == {"id": pid}
    # a global id of another type names no patient
    other_type = global_id("AuditEvent", pk(pid))
    result = await api.gql(RENAME, {"id": other_type, "last": "X"}, staff.token)
    assert result["data"]["updatePatient"]["userErrors"] == [{"code": "NOT_FOUND"}]


async def test_forward_and_backward_paging_with_full_page_info(api: Api, staff: Staff) -> None:
    ids = [await create_patient(api, staff.token, n=n, lastName=f"P{n:02d}") for n in range(1, 8)]

    first = await list_page(api, staff.token, first=3)
    assert [e["node"]["id"] for e in first["edges"]] == ids[:3]
    info = first["pageInfo"]
    assert (info["hasNextPage"], info["hasPreviousPage"]) == (True, False)
    assert info["startCursor"] == first["edges"][0]["cursor"]
    assert info["endCursor"] == first["edges"][-1]["cursor"]

    second = await list_page(api, staff.token, first=3, after=info["endCursor"])
    assert [e["node"]["id"] for e in second["edges"]] == ids[3:6]
    assert (second["pageInfo"]["hasNextPage"], second["pageInfo"]["hasPreviousPage"]) == (True, True)

    # backwards from the end: the last three, still in list order
    tail = await list_page(api, staff.token, last=3)
    assert [e["node"]["id"] for e in tail["edges"]] == ids[4:]
    assert (tail["pageInfo"]["hasNextPage"], tail["pageInfo"]["hasPreviousPage"]) == (False, True)
    back = await list_page(api, staff.token, last=3, before=tail["pageInfo"]["startCursor"])
    assert [e["node"]["id"] for e in back["edges"]] == ids[1:4]
    assert (back["pageInfo"]["hasNextPage"], back["pageInfo"]["hasPreviousPage"]) == (True, True)
    start = await list_page(api, staff.token, last=3, before=back["pageInfo"]["startCursor"])
    assert [e["node"]["id"] for e in start["edges"]] == ids[:1]
    assert start["pageInfo"]["hasPreviousPage"] is False

    # mixing directions is refused with a typed error
    result = await api.gql(LIST, {"first": 2, "last": 2}, staff.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_renaming_the_cursor_patient_skips_and_repeats_nobody(api: Api, staff: Staff) -> None:
    """The "Why" of issue 11: renaming the patient named by the cursor between two pages
    hid every later patient or repeated earlier ones, because the sort key was looked up
    when the next page was asked for."""
    ids = [await create_patient(api, staff.token, n=n, lastName=f"M{n:02d}") for n in range(1, 11)]
    first = await list_page(api, staff.token, first=5)
    cursor_patient = first["edges"][-1]["node"]["id"]
    for new_name in ("Zz-after-everyone", "Aa-before-everyone"):
        await api.gql(RENAME, {"id": cursor_patient, "last": new_name}, staff.token)
        rest = await list_page(api, staff.token, first=50, after=first["pageInfo"]["endCursor"])
        assert [e["node"]["id"] for e in rest["edges"] if e["node"]["id"] != cursor_patient] == ids[5:]


async def test_cursors_are_sealed(api: Api, staff: Staff, other_staff: Staff) -> None:
    await create_patient(api, staff.token, lastName="Vanderbilt", firstName="Ottoline")
    await create_patient(api, staff.token, n=2)
    page = await list_page(api, staff.token, first=1)
    cursor = page["pageInfo"]["endCursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert b"vanderbilt" not in raw.lower() and b"ottoline" not in raw.lower()

    # a cursor sealed with another key, a flipped bit, or garbage: refused, typed
    foreign = Sealer("another-server-secret").seal(
        f"onboarding|{staff.practice_id}", ["a", "a", 1]
    )
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    for bad in (foreign, flipped, "cGF0aWVudDox", "x" * 5000):
        result = await api.gql(LIST, {"first": 1, "after": bad}, staff.token)
        assert result["data"] is None, bad
        assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad
    # the same position gives the same cursor (clients match cursors by equality)
    again = await list_page(api, staff.token, first=1)
    assert again["pageInfo"]["endCursor"] == cursor
    # an audit cursor does not open the patient list
    audit = await api.gql("{ auditEvents(first: 1) { pageInfo { endCursor } } }", token=staff.token)
    result = await api.gql(
        LIST, {"first": 1, "after": audit["data"]["auditEvents"]["pageInfo"]["endCursor"]}, staff.token
    )
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_a_cursor_is_the_same_value_in_every_release() -> None:
    """The nonce is HMAC-SHA256 of context and payload under the HKDF-derived nonce key
    (core/sealing.py): computed here from the primitives, not from the Sealer, so a
    change to how the Sealer computes it (it reuses the keyed state for speed) cannot
    change the cursors that clients hold and match by equality."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    secret = "a-server-secret-of-some-length-0123456789"
    sealer = Sealer(secret, "cursor")
    for context, payload in (("onboarding|7", ["Smith", "John", 12345]), ("audit|7|None", 99)):
        cursor = sealer.seal(context, payload)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"portal cursor v1 nonce"
        ).derive(secret.encode())
        data = json.dumps(payload, separators=(",", ":")).encode()
        expected = hmac.new(key, context.encode() + b"\x00" + data, hashlib.sha256).digest()
        assert raw[:12] == expected[:12]
        assert sealer.seal(context, payload) == cursor
        assert sealer.open(context, cursor) == payload


async def test_audit_events_page_both_ways(api: Api, staff: Staff) -> None:
    for n in range(1, 6):
        await create_patient(api, staff.token, n=n)
    query = """query($first: Int, $after: String, $last: Int, $before: String) {
      auditEvents(first: $first, after: $after, last: $last, before: $before) {
        edges { node { id } } pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }"""
    every = await api.gql(query, {"first": 50}, staff.token)
    all_ids = [e["node"]["id"] for e in every["data"]["auditEvents"]["edges"]]
    assert len(all_ids) == 5 and [pk(i) for i in all_ids] == [5, 4, 3, 2, 1]
    forward = await api.gql(query, {"first": 2}, staff.token)
    nxt = await api.gql(
        query, {"first": 2, "after": forward["data"]["auditEvents"]["pageInfo"]["endCursor"]}, staff.token
    )
    assert [e["node"]["id"] for e in nxt["data"]["auditEvents"]["edges"]] == all_ids[2:4]
    assert nxt["data"]["auditEvents"]["pageInfo"]["hasPreviousPage"] is True
    back = await api.gql(
        query, {"last": 2, "before": nxt["data"]["auditEvents"]["pageInfo"]["startCursor"]}, staff.token
    )
    assert [e["node"]["id"] for e in back["data"]["auditEvents"]["edges"]] == all_ids[:2]
    assert back["data"]["auditEvents"]["pageInfo"]["hasPreviousPage"] is False
    assert back["data"]["auditEvents"]["pageInfo"]["hasNextPage"] is True
