"""GraphQL documents and small steps many test modules share."""

from __future__ import annotations

from typing import Any

CREATE_PATIENT = """
mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { patient { id email portalStatus } userErrors { field code message } }
}"""

ENABLE = """
mutation($ids: [ID!]!) {
  enablePortal(input: {patientIds: $ids}) {
    results { requestedId patient { id portalEnabled portalStatus } userErrors { field code } }
    userErrors { code }
  }
}"""

SEND = """
mutation($ids: [ID!]!, $confirm: Boolean) {
  sendInvitation(input: {patientIds: $ids, confirmSharedEmail: $confirm}) {
    results { requestedId patient { id portalStatus } invitation { sentTo expiresAt reset }
              userErrors { field code } }
    userErrors { code }
  }
}"""

PATIENT = """
query($id: ID!) {
  patient(id: $id) {
    id chartNumber firstName lastName dateOfBirth email zipCode chartStatus portalEnabled
    portalStatus emailSharedWith
    account { username mustChangePassword lastLoginAt locked }
    lastInvitation { sentTo sentAt expiresAt usedAt revokedAt deliveryStatus }
  }
}"""

REDEEM = """
mutation($input: RedeemTokenInput!) {
  redeemToken(input: $input) { account { username } userErrors { field code } }
}"""

LOGIN = """
mutation($u: String!, $p: String!) {
  login(input: {username: $u, password: $p}) { sessionToken mustChangePassword userErrors { code } }
}"""

STRONG_PASSWORD = "violet-harbor-tuesday-42"


def chart(n: int = 1, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "chartNumber": f"CH{n:05d}",
        "firstName": "Avery",
        "lastName": f"Quinn{n}",
        "dateOfBirth": "1980-04-12",
        "email": f"avery.quinn{n}@example.com",
        "zipCode": "02139",
        "chartStatus": "ACTIVE",
    }
    values.update(overrides)
    return values


async def create_patient(api: Any, token: str, **overrides: Any) -> str:
    n = overrides.pop("n", 1)
    result = await api.gql(CREATE_PATIENT, {"input": chart(n, **overrides)}, token)
    payload = result["data"]["createPatient"]
    assert payload["userErrors"] == [], payload
    return payload["patient"]["id"]


async def enabled_patient(api: Any, token: str, **overrides: Any) -> str:
    pid = await create_patient(api, token, **overrides)
    result = await api.gql(ENABLE, {"ids": [pid]}, token)
    assert result["data"]["enablePortal"]["results"][0]["userErrors"] == []
    return pid


async def invite(api: Any, token: str, pid: str, confirm: bool = False) -> dict[str, Any]:
    result = await api.gql(SEND, {"ids": [pid], "confirm": confirm}, token)
    return result["data"]["sendInvitation"]["results"][0]


def pk(global_id: str) -> int:
    """The row number behind a global id (tests look rows up in the database)."""
    from graph.ids import parse_global_id

    parsed = parse_global_id(global_id)
    assert parsed is not None, global_id
    return parsed[1]
