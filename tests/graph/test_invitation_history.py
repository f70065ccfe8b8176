"""SPEC 8.6: Patient.invitations, every link sent with its delivery, newest first,
including the mail server's reply of a failed delivery."""

from __future__ import annotations

from tests.conftest import Api, Mailbox, Staff
from tests.helpers import ENABLE, create_patient, invite

HISTORY = """
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  patient(id: $id) {
    lastInvitation { id }
    invitations(first: $first, after: $after, last: $last, before: $before) {
      edges { cursor node { id channel sentTo sentAt expiresAt usedAt revokedAt revokeReason
                            deliveryStatus deliveryDetail selfService reminder } }
      pageInfo { startCursor endCursor hasNextPage hasPreviousPage }
    }
  }
}"""

UPDATE_EMAIL = """
mutation($id: ID!, $email: String) {
  updatePatient(input: {id: $id, email: $email}) { userErrors { code } }
}"""


async def test_every_link_with_its_delivery_newest_first(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await create_patient(api, staff.token, email="old.address@example.com")
    await api.gql(ENABLE, {"ids": [pid]}, staff.token)
    # a first link that the mail server refuses for good
    mailbox.refuse["old.address@example.com"] = "550 5.1.1 <old.address@example.com>: no such user"
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()
    # then the address is fixed and a second link goes out
    await api.gql(UPDATE_EMAIL, {"id": pid, "email": "new.address@example.com"}, staff.token)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.deliver()

    result = await api.gql(HISTORY, {"id": pid}, staff.token)
    patient = result["data"]["patient"]
    nodes = [e["node"] for e in patient["invitations"]["edges"]]
    assert [n["sentTo"] for n in nodes] == ["new.address@example.com", "old.address@example.com"]
    newest, failed = nodes
    assert newest["id"] == patient["lastInvitation"]["id"]
    assert newest["deliveryStatus"] == "SENT" and newest["deliveryDetail"] is None
    assert newest["channel"] == "EMAIL" and newest["revokedAt"] is None
    assert failed["deliveryStatus"] == "FAILED"
    assert "550" in failed["deliveryDetail"] and "no such user" in failed["deliveryDetail"]
    assert failed["revokeReason"] == "undeliverable" and failed["revokedAt"]
    assert failed["sentAt"] < newest["sentAt"]

    # paging both ways over the same history
    one = (await api.gql(HISTORY, {"id": pid, "first": 1}, staff.token))["data"]["patient"]
    page = one["invitations"]
    assert [e["node"]["id"] for e in page["edges"]] == [newest["id"]]
    assert page["pageInfo"]["hasNextPage"] is True and page["pageInfo"]["hasPreviousPage"] is False
    two = await api.gql(
        HISTORY, {"id": pid, "first": 1, "after": page["pageInfo"]["endCursor"]}, staff.token
    )
    page = two["data"]["patient"]["invitations"]
    assert [e["node"]["id"] for e in page["edges"]] == [failed["id"]]
    assert page["pageInfo"]["hasNextPage"] is False and page["pageInfo"]["hasPreviousPage"] is True
    back = await api.gql(
        HISTORY, {"id": pid, "last": 5, "before": page["pageInfo"]["startCursor"]}, staff.token
    )
    assert [e["node"]["id"] for e in back["data"]["patient"]["invitations"]["edges"]] == [newest["id"]]


async def test_a_history_cursor_of_another_patient_is_refused(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    first = await create_patient(api, staff.token, n=1)
    second = await create_patient(api, staff.token, n=2)
    await api.gql(ENABLE, {"ids": [first, second]}, staff.token)
    for pid in (first, second, first):
        await invite(api, staff.token, pid)
    page = (await api.gql(HISTORY, {"id": first, "first": 1}, staff.token))["data"]["patient"]
    cursor = page["invitations"]["pageInfo"]["endCursor"]
    result = await api.gql(HISTORY, {"id": second, "first": 1, "after": cursor}, staff.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
