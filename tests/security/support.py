"""Documents and steps the security tests share (SECURITY.md checklist)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tortoise import connections

from tests.conftest import TABLES, Api, Mailbox, body_text, token_from
from tests.helpers import (
    LOGIN,
    REDEEM,
    STRONG_PASSWORD,
    enabled_patient,
    invite,
)

TOKEN_INFO = """
query($t: String!) {
  tokenInfo(token: $t) { valid error usernameRequired username expiresAt dateOfBirthRequired }
}"""

SELF_RESET = """
mutation($input: IdentityInput!) {
  requestSelfReset(input: $input) { ok message userErrors { field code message } }
}"""

REMINDER = """
mutation($input: IdentityInput!) {
  requestUsernameReminder(input: $input) { ok message userErrors { field code message } }
}"""

CHANGE_PASSWORD = """
mutation($c: String!, $n: String!) {
  changePassword(input: {currentPassword: $c, newPassword: $n}) {
    ok sessionToken userErrors { field code message }
  }
}"""

SET_CREDENTIALS = """
mutation($pid: ID!, $u: String!, $p: String) {
  setCredentials(input: {patientId: $pid, username: $u, password: $p}) {
    account { username mustChangePassword } userErrors { field code message }
  }
}"""

UPDATE_PATIENT = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id email firstName lastName } userErrors { field code message } }
}"""

DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) {
    results { requestedId patient { id portalEnabled } userErrors { field code } }
    userErrors { code }
  }
}"""

AUDIT = """
query($pid: ID, $first: Int) {
  auditEvents(patientId: $pid, first: $first) {
    edges { node { action actorType actorId patientId outcome occurredAt clientAddress requestId } }
  }
}"""

USERNAME_AVAILABLE = """
query($u: String!) { usernameAvailable(username: $u) { valid available reason } }"""

LOGIN_FULL = """
mutation($u: String!, $p: String!) {
  login(input: {username: $u, password: $p}) {
    sessionToken mustChangePassword userErrors { field code message }
  }
}"""

IDENTITY = {
    "email": "avery.quinn1@example.com",
    "lastName": "Quinn1",
    "dateOfBirth": "1980-04-12",
    "zipCode": "02139",
}


def identity(n: int = 1, **overrides: Any) -> dict[str, Any]:
    values = {
        "email": f"avery.quinn{n}@example.com",
        "lastName": f"Quinn{n}",
        "dateOfBirth": "1980-04-12",
        "zipCode": "02139",
    }
    values.update(overrides)
    return values


def b64decode_token(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


async def post(api: Api, query: str, variables: dict[str, Any] | None = None, **headers: str):  # type: ignore[no-untyped-def]
    """The raw httpx response (status and headers matter to these tests)."""
    return await api.client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )


async def invited(api: Api, staff_token: str, mailbox: Mailbox, n: int = 1, **chart: Any) -> tuple[str, str]:
    """An enabled patient with a delivered invitation: (patient id, raw token)."""
    pid = await enabled_patient(api, staff_token, n=n, **chart)
    result = await invite(api, staff_token, pid)
    assert result["userErrors"] == [], result
    await api.deliver()
    email = chart.get("email", f"avery.quinn{n}@example.com")
    messages = mailbox.to(email)
    assert messages, f"no invitation reached {email}"
    return pid, token_from(messages[-1])


async def redeem(
    api: Api,
    token: str,
    username: str | None,
    password: str = STRONG_PASSWORD,
    date_of_birth: str | None = None,
) -> dict[str, Any]:
    """Redeem a link; resets of an account in use need the date of birth (SPEC 7.1)."""
    values = {"token": token, "username": username, "password": password}
    if date_of_birth:
        values["dateOfBirth"] = date_of_birth
    result = await api.gql(REDEEM, {"input": values})
    return result["data"]["redeemToken"]


async def active_patient(
    api: Api,
    staff_token: str,
    mailbox: Mailbox,
    n: int = 1,
    username: str | None = None,
    password: str = STRONG_PASSWORD,
    **chart: Any,
) -> str:
    """A patient who chose a username and password through an emailed link."""
    pid, token = await invited(api, staff_token, mailbox, n=n, **chart)
    payload = await redeem(api, token, username or f"patient{n}", password)
    assert payload["userErrors"] == [], payload
    await api.deliver()
    mailbox.clear()
    return pid


async def login(api: Api, username: str, password: str, **headers: str) -> dict[str, Any]:
    result = await api.gql(LOGIN_FULL, {"u": username, "p": password}, **headers)
    return result["data"]["login"]


async def table_rows(table: str) -> list[dict[str, Any]]:
    conn = connections.get("default")
    return list(await conn.execute_query_dict(f"SELECT * FROM {table}"))  # noqa: S608


async def database_text() -> str:
    """Every row of every table as one string, to look for secrets in."""
    parts = []
    for table in TABLES:
        parts.append(json.dumps(await table_rows(table), default=str))
    return "\n".join(parts)


async def scalar(sql: str, *params: Any) -> Any:
    conn = connections.get("default")
    if conn.capabilities.dialect != "sqlite":
        for i in range(len(params)):
            sql = sql.replace("?", f"${i + 1}", 1)
    rows = await conn.execute_query_dict(sql, list(params))
    return next(iter(rows[0].values())) if rows else None


async def execute(sql: str, *params: Any) -> None:
    conn = connections.get("default")
    if conn.capabilities.dialect != "sqlite":
        for i in range(len(params)):
            sql = sql.replace("?", f"${i + 1}", 1)
    await conn.execute_query(sql, list(params))


@dataclass
class HasherSpy:
    """Wraps the app's Hasher: records every password it is asked to hash or verify."""

    hashed: list[str] = field(default_factory=list)
    verified: list[tuple[str, str | None]] = field(default_factory=list)

    def install(self, api: Api, monkeypatch: Any) -> HasherSpy:
        hasher = api.services.hasher
        real_hash: Callable[..., Any] = hasher.hash
        real_verify: Callable[..., Any] = hasher.verify_and_update

        async def spy_hash(password: str) -> str:
            self.hashed.append(password)
            return await real_hash(password)

        async def spy_verify(password: str, stored: str | None) -> tuple[bool, str | None]:
            self.verified.append((password, stored))
            return await real_verify(password, stored)

        monkeypatch.setattr(hasher, "hash", spy_hash)
        monkeypatch.setattr(hasher, "verify_and_update", spy_verify)
        return self

    @property
    def longest(self) -> int:
        lengths = [len(p) for p in self.hashed] + [len(p) for p, _ in self.verified]
        return max(lengths, default=0)


def codes(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["userErrors"]]


__all__ = [
    "AUDIT",
    "CHANGE_PASSWORD",
    "DISABLE",
    "IDENTITY",
    "LOGIN",
    "LOGIN_FULL",
    "REDEEM",
    "REMINDER",
    "SELF_RESET",
    "SET_CREDENTIALS",
    "STRONG_PASSWORD",
    "TOKEN_INFO",
    "UPDATE_PATIENT",
    "USERNAME_AVAILABLE",
    "HasherSpy",
    "active_patient",
    "b64decode_token",
    "body_text",
    "codes",
    "database_text",
    "execute",
    "identity",
    "invited",
    "login",
    "post",
    "redeem",
    "scalar",
    "table_rows",
]
