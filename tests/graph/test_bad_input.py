"""Bad input (SPEC section 6): wrong types, unknown ids, huge strings, NUL bytes, invalid
dates, out-of-range page sizes and garbage cursors get a clear GraphQL error or a typed
userError; never a 500, a stack trace or SQL in the response, and nothing is written."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from tortoise import connections

from tests.conftest import TABLES, Api, Staff
from tests.helpers import CREATE_PATIENT, chart, create_patient, enabled_patient

ONBOARDING = """
query($first: Int, $after: String, $filter: OnboardingFilter) {
  onboarding(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id } } pageInfo { endCursor hasNextPage } totalCount
    statusCounts { status count }
  }
}"""

AUDIT = """
query($patientId: ID, $first: Int, $after: String) {
  auditEvents(patientId: $patientId, first: $first, after: $after) {
    edges { cursor node { action } } pageInfo { endCursor hasNextPage }
  }
}"""

UPDATE = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id } userErrors { field code message } }
}"""

BULK = """
mutation($ids: [ID!]!) {
  enablePortal(input: {patientIds: $ids}) { results { requestedId userErrors { code } } userErrors { code } }
  disablePortal(input: {patientIds: $ids}) { results { requestedId userErrors { code } } userErrors { code } }
  sendInvitation(input: {patientIds: $ids}) { results { requestedId userErrors { code } } userErrors { code } }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username } userErrors { field code } }
}"""

USERNAME_AVAILABLE = """
query($u: String!, $p: ID) { usernameAvailable(username: $u, patientId: $p) { valid available reason } }"""

PATIENT = """query($id: ID!) { patient(id: $id) { id } }"""

LOGIN = """
mutation($u: String!, $p: String!) {
  login(input: {username: $u, password: $p}) { sessionToken userErrors { code } }
}"""

TOKEN_INFO = """query($t: String!) { tokenInfo(token: $t) { valid error } }"""

REDEEM = """
mutation($input: RedeemTokenInput!) { redeemToken(input: $input) { account { username } userErrors { code } } }"""

SELF_RESET = """
mutation($input: IdentityInput!) { requestSelfReset(input: $input) { ok userErrors { code } } }"""

LEAKS = (
    "Traceback",
    'File "',
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    " FROM ",
    "sqlite",
    "asyncpg",
    "psycopg",
    "tortoise",
    "IntegrityError",
    "OperationalError",
    "Exception",
)
MEGABYTE = "x" * (1024 * 1024)
BIG = "y" * 40_000  # two fit under the body cap, far over every field limit


async def row_counts() -> dict[str, int]:
    conn = connections.get("default")
    counts = {}
    for table in TABLES:
        rows = await conn.execute_query_dict(f"SELECT COUNT(*) AS n FROM {table}")
        counts[table] = int(rows[0]["n"])
    return counts


def without_audit(counts: dict[str, int]) -> dict[str, int]:
    return {t: n for t, n in counts.items() if t != "audit_event"}


def assert_clean(response: httpx.Response) -> dict[str, Any]:
    """No 500, nothing internal in the body, and any top-level error is one we meant."""
    assert response.status_code < 500, response.text
    for leak in LEAKS:
        assert leak not in response.text, (leak, response.text[:2000])
    body = response.json()
    for error in body.get("errors") or []:
        assert error["message"], body
        assert error["message"] != "Unexpected error.", body  # a masked fault
        assert len(error["message"]) < 500, error["message"][:600]
    return body


async def post(api: Api, body: Any, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, (bytes, str)):
        return await api.client.post(
            "/graphql", content=body, headers={**headers, "content-type": "application/json"}
        )
    return await api.client.post("/graphql", json=body, headers=headers, **kwargs)


async def gql(
    api: Api, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    return assert_clean(await post(api, {"query": query, "variables": variables or {}}, token))


def top_error(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    assert not (body.get("data") or {}).get("createPatient"), body
    return str(body["errors"][0]["message"])


def b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


@pytest.fixture
async def seeded(api: Api, staff: Staff, other_staff: Staff) -> str:
    """A patient of each practice and an audit trail, so 'nothing written' means
    something. Returns our patient's id."""
    pid = await enabled_patient(api, staff.token, n=1)
    await create_patient(api, staff.token, n=2)
    await create_patient(api, other_staff.token, n=3)
    return pid


# --- wrong types ----------------------------------------------------------------------------


WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    (CREATE_PATIENT, {"input": {**chart(9), "dateOfBirth": 19800412}}),
    (CREATE_PATIENT, {"input": {**chart(9), "chartStatus": "ALIVE"}}),
    (CREATE_PATIENT, {"input": {**chart(9), "firstName": 42}}),
    (CREATE_PATIENT, {"input": {**chart(9), "email": ["a@example.com"]}}),
    (CREATE_PATIENT, {"input": {**chart(9), "unknownField": "x"}}),
    (CREATE_PATIENT, {"input": "not an object"}),
    (CREATE_PATIENT, {}),
    (BULK, {"ids": {"id": 1}}),
    (BULK, {"ids": [None]}),
    (BULK, {"ids": [1.5]}),
    (ONBOARDING, {"first": "ten"}),
    (ONBOARDING, {"first": 2.5}),
    (ONBOARDING, {"filter": {"hasEmail": "yes"}}),
    (ONBOARDING, {"filter": {"status": ["PURPLE"]}}),
    (ONBOARDING, {"filter": {"status": "INVITED", "search": 7}}),
    (ONBOARDING, {"after": 12}),
    (AUDIT, {"first": True}),
    (USERNAME_AVAILABLE, {"u": 123}),
    (USERNAME_AVAILABLE, {}),
    (SET_CREDENTIALS, {"input": {"patientId": "1", "username": "ok.name", "password": 5}}),
    ('query { onboarding(first: "x") { totalCount } }', {}),
    ("query { patient { id } }", {}),
    ("query { patient(id: 1, bogus: 2) { id } }", {}),
    ("query { nosuchfield }", {}),
    ("mutation { createPatient { patient { id } } }", {}),
    ("query {", {}),
    ("{ __typename } { __typename }", {}),
]


async def test_wrong_types_are_clear_graphql_errors(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    for query, variables in WRONG_TYPES:
        body = await gql(api, query, variables, staff.token)
        assert top_error(body), (query, variables)
    assert await row_counts() == before


MALFORMED_BODIES = [
    b"{not json",
    b"[]",
    b'"just a string"',
    b'{"query": 5}',
    b'{"query": "query { __typename }", "variables": [1, 2]}',
    b'{"query": "query { __typename }", "variables": "x"}',
    b"\xff\xfe\x00garbage",
    b"",
    b'{"query": ""}',
    b'{"variables": {}}',
]


async def test_malformed_bodies_are_refused(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    for raw in MALFORMED_BODIES:
        response = await post(api, raw, staff.token)
        assert response.status_code == 400, (raw, response.text)
        for leak in LEAKS:
            assert leak not in response.text
    assert await row_counts() == before


async def test_get_requests_cannot_carry_operations(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    response = await api.client.get(
        "/graphql",
        params={
            "query": 'mutation { enablePortal(input: {patientIds: ["1"]}) { userErrors { code } } }'
        },
        headers={"Authorization": f"Bearer {staff.token}", "accept": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert await row_counts() == before


# --- unknown ids ----------------------------------------------------------------------------


BAD_IDS = [
    "0",
    "-1",
    "999999",
    "2147483648",
    "99999999999999999999",
    "1e3",
    "0x1",
    "abc",
    "",
    " 1 ",
]


async def test_unknown_ids_read_as_not_found(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    for bad_id in BAD_IDS:
        await unknown_id_everywhere(api, staff, bad_id)
    assert await row_counts() == before


async def unknown_id_everywhere(api: Api, staff: Staff, bad_id: str) -> None:
    assert (await gql(api, PATIENT, {"id": bad_id}, staff.token)) == {"data": {"patient": None}}
    update = await gql(api, UPDATE, {"input": {"id": bad_id, "firstName": "X"}}, staff.token)
    assert [e["code"] for e in update["data"]["updatePatient"]["userErrors"]] == ["NOT_FOUND"]
    bulk = (await gql(api, BULK, {"ids": [bad_id]}, staff.token))["data"]
    for name in ("enablePortal", "disablePortal", "sendInvitation"):
        assert bulk[name]["userErrors"] == []
        assert [r["userErrors"] for r in bulk[name]["results"]] == [[{"code": "NOT_FOUND"}]]
    creds = await gql(
        api, SET_CREDENTIALS, {"input": {"patientId": bad_id, "username": "ok.name"}}, staff.token
    )
    assert creds["data"]["setCredentials"]["userErrors"] == [
        {"field": ["patientId"], "code": "NOT_FOUND"}
    ]
    audit = await gql(api, AUDIT, {"patientId": bad_id}, staff.token)
    assert audit["data"]["auditEvents"]["edges"] == []
    check = await gql(api, USERNAME_AVAILABLE, {"u": "ok.name", "p": bad_id}, staff.token)
    assert check["data"]["usernameAvailable"]["valid"] is True


# --- huge strings -----------------------------------------------------------------------------


async def test_a_megabyte_body_is_refused_before_any_resolver(
    api: Api, staff: Staff, seeded: str
) -> None:
    before = await row_counts()
    for query, variables in [
        (CREATE_PATIENT, {"input": chart(9, firstName=MEGABYTE)}),
        (ONBOARDING, {"filter": {"search": MEGABYTE}}),
        (USERNAME_AVAILABLE, {"u": MEGABYTE}),
        (
            SET_CREDENTIALS,
            {"input": {"patientId": seeded, "username": "a.b", "password": MEGABYTE}},
        ),
        (LOGIN, {"u": "someone", "p": MEGABYTE}),
    ]:
        response = await post(api, {"query": query, "variables": variables}, staff.token)
        assert response.status_code == 413
        body = response.json()
        assert body["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        for leak in LEAKS:
            assert leak not in response.text

    # even when the client lies about the length, or streams it in chunks
    async def chunks() -> Any:
        for _ in range(16):
            yield b" " * 65536

    response = await api.client.post(
        "/graphql",
        content=chunks(),
        headers={"Authorization": f"Bearer {staff.token}", "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert await row_counts() == before


CHART_FIELDS = ["chartNumber", "firstName", "lastName", "email", "zipCode"]


async def test_huge_chart_fields_are_invalid_input(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    for field in CHART_FIELDS:
        body = await gql(api, CREATE_PATIENT, {"input": chart(9, **{field: BIG})}, staff.token)
        payload = body["data"]["createPatient"]
        assert payload["patient"] is None
        errors = [(e["code"], e["field"]) for e in payload["userErrors"]]
        assert errors == [("INVALID_INPUT", [field])]
        assert BIG not in json.dumps(body)  # the value is not echoed back
        update = await gql(api, UPDATE, {"input": {"id": seeded, field: BIG}}, staff.token)
        errors = [(e["code"], e["field"]) for e in update["data"]["updatePatient"]["userErrors"]]
        assert errors == [("INVALID_INPUT", [field])]
    assert await row_counts() == before


async def test_huge_strings_elsewhere(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    # search: a clear error
    body = await gql(api, ONBOARDING, {"filter": {"search": BIG}}, staff.token)
    assert "search" in top_error(body)
    # username check: not valid
    body = await gql(api, USERNAME_AVAILABLE, {"u": BIG}, staff.token)
    assert body["data"]["usernameAvailable"]["valid"] is False
    # setCredentials: both fields refused with codes
    body = await gql(
        api,
        SET_CREDENTIALS,
        {"input": {"patientId": seeded, "username": BIG, "password": BIG}},
        staff.token,
    )
    assert body["data"]["setCredentials"]["userErrors"] == [
        {"field": ["username"], "code": "USERNAME_INVALID"},
        {"field": ["password"], "code": "PASSWORD_TOO_WEAK"},
    ]
    # ids and cursors
    assert (await gql(api, PATIENT, {"id": BIG}, staff.token))["data"]["patient"] is None
    assert top_error(await gql(api, ONBOARDING, {"after": BIG}, staff.token))
    assert top_error(await gql(api, AUDIT, {"after": BIG}, staff.token))
    assert await row_counts() == before
    # the anonymous side too (a failed login is audited, nothing else is written)
    login = await gql(api, LOGIN, {"u": BIG, "p": BIG})
    assert [e["code"] for e in login["data"]["login"]["userErrors"]] == ["INVALID_CREDENTIALS"]
    info = await gql(api, TOKEN_INFO, {"t": BIG})
    assert info["data"]["tokenInfo"] == {"valid": False, "error": "TOKEN_INVALID"}
    assert without_audit(await row_counts()) == without_audit(before)


# --- NUL bytes ----------------------------------------------------------------------------------


async def test_nul_bytes_in_chart_fields_are_invalid_input(
    api: Api, staff: Staff, seeded: str
) -> None:
    before = await row_counts()
    for field in CHART_FIELDS:
        value = {"email": "a\x00b@example.com", "zipCode": "021\x0039"}.get(field, "Na\x00me")
        body = await gql(api, CREATE_PATIENT, {"input": chart(9, **{field: value})}, staff.token)
        errors = [(e["code"], e["field"]) for e in body["data"]["createPatient"]["userErrors"]]
        assert errors == [("INVALID_INPUT", [field])]
        update = await gql(api, UPDATE, {"input": {"id": seeded, field: value}}, staff.token)
        errors = [(e["code"], e["field"]) for e in update["data"]["updatePatient"]["userErrors"]]
        assert errors == [("INVALID_INPUT", [field])]
    assert await row_counts() == before


async def test_nul_bytes_in_reads_and_credentials(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    # search with a NUL byte: a clear answer (no match or a clear error), never a fault
    body = await gql(api, ONBOARDING, {"filter": {"search": "Qu\x00inn"}}, staff.token)
    if body.get("errors"):
        assert top_error(body)
    else:
        assert body["data"]["onboarding"]["totalCount"] == 0
    assert (await gql(api, PATIENT, {"id": "1\x00"}, staff.token))["data"]["patient"] is None
    assert top_error(await gql(api, ONBOARDING, {"after": b64(b"patient:1\x00")}, staff.token))
    body = await gql(api, USERNAME_AVAILABLE, {"u": "nul\x00name"}, staff.token)
    assert body["data"]["usernameAvailable"]["valid"] is False
    body = await gql(
        api,
        SET_CREDENTIALS,
        {
            "input": {
                "patientId": seeded,
                "username": "nul\x00name",
                "password": "long-enough\x00-pw",
            }
        },
        staff.token,
    )
    assert body["data"]["setCredentials"]["userErrors"] == [
        {"field": ["username"], "code": "USERNAME_INVALID"},
        {"field": ["password"], "code": "PASSWORD_TOO_WEAK"},
    ]
    bulk = (await gql(api, BULK, {"ids": ["1\x00"]}, staff.token))["data"]
    assert bulk["enablePortal"]["results"][0]["userErrors"] == [{"code": "NOT_FOUND"}]
    assert await row_counts() == before


async def test_nul_bytes_on_the_anonymous_side(
    api: Api, staff: Staff, seeded: str, capfd: pytest.CaptureFixture[str]
) -> None:
    before = await row_counts()
    login = await gql(api, LOGIN, {"u": "avery\x00q", "p": "whatever-password"})
    assert [e["code"] for e in login["data"]["login"]["userErrors"]] == ["INVALID_CREDENTIALS"]
    info = await gql(api, TOKEN_INFO, {"t": "abc\x00def"})
    assert info["data"]["tokenInfo"]["valid"] is False
    redeem = await gql(
        api, REDEEM, {"input": {"token": "abc\x00", "username": "x\x00", "password": "p\x00"}}
    )
    assert redeem["data"]["redeemToken"]["account"] is None
    assert len(redeem["data"]["redeemToken"]["userErrors"]) == 1
    identity = {
        "email": "avery.quinn1@example.com\x00",
        "lastName": "Quinn1\x00",
        "dateOfBirth": "1980-04-12",
        "zipCode": "02139\x00",
    }
    reset = await gql(api, SELF_RESET, {"input": identity})
    assert reset["data"]["requestSelfReset"] == {"ok": True, "userErrors": []}
    await api.services.background.drain()
    captured = capfd.readouterr()
    assert "background.failed" not in captured.out + captured.err  # the lookup did not fail
    # failed logins and self-service requests are audited; nothing else is written
    assert without_audit(await row_counts()) == without_audit(before)


# --- invalid dates ------------------------------------------------------------------------------


UNPARSEABLE_DATES = [
    "2020-02-30",
    "2021-13-01",
    "not-a-date",
    "",
    "12/04/1980",
    "1980-4-12",
    "+1980-04-12",
    "1980-04-12T00:00:00",
]


async def test_unparseable_dates_are_graphql_errors(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    for value in UNPARSEABLE_DATES:
        body = await gql(api, CREATE_PATIENT, {"input": chart(9, dateOfBirth=value)}, staff.token)
        assert top_error(body), value
        body = await gql(api, UPDATE, {"input": {"id": seeded, "dateOfBirth": value}}, staff.token)
        assert top_error(body), value
        identity = {"email": "a@example.com", "lastName": "Q", "dateOfBirth": value, "zipCode": "1"}
        assert top_error(await gql(api, SELF_RESET, {"input": identity})), value
    assert await row_counts() == before


async def test_out_of_range_dates_are_invalid_input(api: Api, staff: Staff, seeded: str) -> None:
    before = await row_counts()
    for value in ["0001-01-01", "1879-12-31", "9999-12-31", "2999-01-01"]:
        body = await gql(api, CREATE_PATIENT, {"input": chart(9, dateOfBirth=value)}, staff.token)
        payload = body["data"]["createPatient"]
        errors = [(e["code"], e["field"]) for e in payload["userErrors"]]
        assert errors == [("INVALID_INPUT", ["dateOfBirth"])], value
        update = await gql(
            api, UPDATE, {"input": {"id": seeded, "dateOfBirth": value}}, staff.token
        )
        errors = [(e["code"], e["field"]) for e in update["data"]["updatePatient"]["userErrors"]]
        assert errors == [("INVALID_INPUT", ["dateOfBirth"])], value
    assert await row_counts() == before


# --- page sizes and cursors ---------------------------------------------------------------------


async def test_out_of_range_first_is_a_clear_error(api: Api, staff: Staff, seeded: str) -> None:
    for first in [0, -1, -2147483648, 201, 100000, 2147483647]:
        for query in (ONBOARDING, AUDIT):
            body = await gql(api, query, {"first": first}, staff.token)
            assert "first" in top_error(body), first
            assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_first_beyond_int_is_a_clear_error(api: Api, staff: Staff, seeded: str) -> None:
    for first in [2147483648, 10**20, -(10**20)]:
        for query in (ONBOARDING, AUDIT):
            assert top_error(await gql(api, query, {"first": first}, staff.token)), first
        literal = f"query {{ onboarding(first: {first}) {{ totalCount }} }}"
        assert top_error(await gql(api, literal, {}, staff.token)), first


async def test_first_at_the_bounds_is_accepted(api: Api, staff: Staff, seeded: str) -> None:
    for first in (1, api.settings.max_page_size, None):
        for query in (ONBOARDING, AUDIT):
            body = await gql(api, query, {"first": first}, staff.token)
            assert "errors" not in body


GARBAGE_CURSORS = [
    "abc",
    "!!!",
    "====",
    "cGF0aWVudDo=",  # "patient:"
    b64(b"patient:abc"),
    b64(b"patient:-1"),
    b64(b"patient:1.5"),
    b64(b"patient:" + b"9" * 13),
    b64(b"audit:1"),
    b64(b"\xff\xfe\xfd"),
    "cGF0aWVudDox" + "\u00e9",
    "a" * 5000,
]


async def test_garbage_onboarding_cursors_are_clear_errors(
    api: Api, staff: Staff, seeded: str
) -> None:
    for cursor in GARBAGE_CURSORS:
        body = await gql(api, ONBOARDING, {"first": 10, "after": cursor}, staff.token)
        assert "cursor" in top_error(body), cursor
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


GARBAGE_AUDIT_CURSORS = [
    "abc",
    b64(b"audit:abc"),
    b64(b"patient:1"),
    b64(b"audit:-5"),
    b64(b"audit:" + b"9" * 40),
    b64(b"\xff\xfe"),
    "a" * 5000,
]


async def test_garbage_audit_cursors_are_clear_errors(api: Api, staff: Staff, seeded: str) -> None:
    for cursor in GARBAGE_AUDIT_CURSORS:
        body = await gql(api, AUDIT, {"first": 10, "after": cursor}, staff.token)
        assert "cursor" in top_error(body), cursor


async def test_well_formed_cursors_naming_no_row_give_an_empty_page(
    api: Api, staff: Staff, seeded: str
) -> None:
    # a cursor of the right shape that names no row of the practice: a clear answer
    for number in [2147483647, 2147483648, 999999999999]:
        await cursor_naming_no_row(api, staff, number)


async def cursor_naming_no_row(api: Api, staff: Staff, number: int) -> None:
    onboarding = await gql(
        api, ONBOARDING, {"after": b64(f"patient:{number}".encode())}, staff.token
    )
    if onboarding.get("errors"):
        assert "cursor" in top_error(onboarding)
    else:
        assert onboarding["data"]["onboarding"]["edges"] == []
    audit = await gql(api, AUDIT, {"after": b64(f"audit:{number}".encode())}, staff.token)
    if audit.get("errors"):
        assert "cursor" in top_error(audit)
    else:
        assert audit["data"]["auditEvents"]["pageInfo"]["hasNextPage"] is False


# --- hostile bytes (issue 10, item 3) ------------------------------------------------------------


def assert_clean_400(response: httpx.Response) -> None:
    assert response.status_code == 400
    for leak in LEAKS:
        assert leak not in response.text, (leak, response.text[:2000])
    assert len(response.text) < 500

CHANGE_PASSWORD = """
mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { ok userErrors { code } } }"""

STATS = """query($s: Date!, $e: Date!) { onboardingStats(start: $s, end: $e) { invitationsSent activationRate } }"""

# Where a lone surrogate typed by a client used to become a masked fault (and, on
# PostgreSQL, a log line quoting the value).
SURROGATE_TARGETS: list[tuple[str, str, bool]] = [
    ("login", '{"query": "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { sessionToken } }", "variables": {"u": "rosa\\ud800", "p": "lantern-orchard-velvet"}}', False),
    ("search", '{"query": "query($f: OnboardingFilter) { onboarding(filter: $f) { totalCount } }", "variables": {"f": {"search": "diaz\\udfff"}}}', True),
    ("createPatient", '{"query": "mutation($i: CreatePatientInput!) { createPatient(input: $i) { patient { id } userErrors { code } } }", "variables": {"i": {"chartNumber": "S-1", "firstName": "Ro\\ud83dsa", "lastName": "Diaz", "dateOfBirth": "1984-03-09", "email": "rosa\\ud800@example.com"}}}', True),
    ("setCredentials", '{"query": "mutation($i: SetCredentialsInput!) { setCredentials(input: $i) { userErrors { code } } }", "variables": {"i": {"patientId": "1", "username": "rosa\\ud800", "password": "kettle-maple-sunrise\\udc00"}}}', True),
    ("changePassword", '{"query": "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { ok } }", "variables": {"c": "x\\ud800", "n": "kettle-maple-sunrise\\ud800"}}', False),
    ("redeemToken", '{"query": "mutation($i: RedeemTokenInput!) { redeemToken(input: $i) { userErrors { code } } }", "variables": {"i": {"token": "abc\\ud800", "password": "kettle-maple-sunrise"}}}', False),
    ("graphql_literal", '{"query": "{ tokenInfo(token: \\"abc\\\\ud800\\") { valid } }"}', False),
]


@pytest.mark.parametrize("case", SURROGATE_TARGETS, ids=[c[0] for c in SURROGATE_TARGETS])
async def test_lone_surrogates_are_refused_and_not_logged(
    api: Api, staff: Staff, seeded: str, case: tuple[str, str, bool],
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """A lone UTF-16 surrogate is no character: refused as a 400 (or a GraphQL error),
    never a masked fault, and nothing the client typed reaches the log."""
    import logging

    caplog.set_level(logging.INFO)
    _, body, as_staff = case
    before = await row_counts()
    response = await post(api, body.encode(), staff.token if as_staff else None)
    if case[0] == "graphql_literal":  # a GraphQL escape: graphql-core's syntax error
        assert "Invalid Unicode escape" in top_error(assert_clean(response))
    else:  # a JSON escape: orjson refuses the body
        assert_clean_400(response)
    assert without_audit(await row_counts()) == without_audit(before)
    logged = capsys.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    for typed in ("rosa", "diaz", "kettle-maple", "Ro"):
        assert typed not in logged.replace("portal", ""), logged


NESTED = [
    b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    b'{"query": "{ __typename }", "variables": ' + b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"}",
    b"[" * 50_000 + b"]" * 50_000,
]


@pytest.mark.parametrize("body", NESTED, ids=["arrays", "objects", "top_level"])
async def test_deeply_nested_json_is_a_400(api: Api, body: bytes) -> None:
    assert len(body) < api.settings.max_body_bytes * 3
    response = await post(api, body[: api.settings.max_body_bytes - 1])
    assert_clean_400(response)


INVALID_UTF8 = [
    b'{"query": "{ tokenInfo(token: \\"\xc0\xaf\\") { valid } }"}',  # overlong "/"
    b'{"query": "{ tokenInfo(token: \\"\xe0\x80\xaf\\") { valid } }"}',  # overlong, 3 bytes
    b'{"query": "{ tokenInfo(token: \\"\xed\xa0\x80\\") { valid } }"}',  # encoded surrogate
    b'{"query": "{ tokenInfo(token: \\"\xff\xfe\\") { valid } }"}',
    b'{"query": "{ tokenInfo(token: \\"\x80\\") { valid } }"}',  # lone continuation byte
    b'\xef\xbb\xbf{"query": "{ __typename }"}',  # byte-order mark: JSON text has none
]


@pytest.mark.parametrize("body", INVALID_UTF8, ids=["overlong2", "overlong3", "surrogate", "fffe", "continuation", "bom"])
async def test_invalid_utf8_is_a_400(api: Api, body: bytes) -> None:
    response = await post(api, body)
    assert response.status_code == 400, response.text[:300]
    assert_clean_400(response)


async def test_nul_in_graphql_literals_is_refused(api: Api, staff: Staff, seeded: str) -> None:
    """A NUL written as a GraphQL escape inside the document (not a variable)."""
    before = await row_counts()
    for query in (
        '{ onboarding(filter: {search: "a\\u0000b"}) { totalCount } }',
        '{ usernameAvailable(username: "a\\u0000b") { valid } }',
        'mutation { login(input: {username: "a\\u0000", password: "b\\u0000"}) { sessionToken userErrors { code } } }',
    ):
        await gql(api, query, token=staff.token)  # a typed answer, never a masked fault
    assert without_audit(await row_counts()) == without_audit(before)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("9999-12-31", "9999-12-31"),
        ("0001-01-01", "0001-01-01"),
        ("9999-12-30", "9999-12-31"),
        ("0001-01-01", "0001-01-02"),
        ("1899-12-31", "1900-01-01"),
        ("2026-02-29", "2026-03-01"),
        ("10000-01-01", "10000-01-02"),
        ("-0001-01-01", "2020-01-01"),
    ],
)
async def test_stats_dates_at_the_calendar_edges(
    api: Api, staff: Staff, seeded: str, start: str, end: str
) -> None:
    """onboardingStats(9999-12-31, 9999-12-31) was an OverflowError (a masked fault)."""
    body = await gql(api, STATS, {"s": start, "e": end}, staff.token)
    assert body["data"] is None
    for error in body["errors"]:
        assert error.get("extensions", {}).get("code") == "BAD_USER_INPUT" or "Date" in error["message"]


@pytest.mark.parametrize(("start", "end"), [("1900-01-01", "1900-01-01"), ("9998-12-30", "9998-12-31")])
async def test_stats_dates_just_inside_are_answered(
    api: Api, staff: Staff, seeded: str, start: str, end: str
) -> None:
    body = await gql(api, STATS, {"s": start, "e": end}, staff.token)
    assert body["data"]["onboardingStats"]["invitationsSent"] == 0


async def test_driver_faults_are_logged_without_the_typed_value(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defence in depth: should a value reach the driver and fail there, asyncpg's
    message quotes it; the fault is logged by type and frames only."""
    import asyncpg

    import graph.queries

    async def failing(token: str, *_args: Any) -> Any:
        raise asyncpg.exceptions.DataError(f"invalid input for query argument $1: {token!r}")

    monkeypatch.setattr(graph.queries, "token_info", failing)
    capsys.readouterr()
    response = await post(
        api, {"query": TOKEN_INFO, "variables": {"t": "typed-by-the-client-4821"}}
    )
    assert response.json()["errors"][0]["message"] == "Unexpected error."
    logged = capsys.readouterr().err
    assert "graphql.fault" in logged and "DataError" in logged and "failing" in logged
    assert "typed-by-the-client-4821" not in logged
