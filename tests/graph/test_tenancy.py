"""Tenancy (SPEC section 3): staff of practice B never read or change practice A's
patients, accounts, links or audit events; by id, by search, by filter or in counts.
And no staff operation runs without a valid staff token."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    build_schema,
    get_named_type,
)
from tortoise import connections

from core.secrets import digest
from graph.sdl import sdl
from models import StaffUser
from tests.conftest import TABLES, Api, Mailbox, Staff
from tests.helpers import LOGIN, PATIENT, STRONG_PASSWORD, create_patient, enabled_patient, invite

ONBOARDING = """
query($filter: OnboardingFilter, $after: String) {
  onboarding(first: 200, filter: $filter, after: $after) {
    edges { node { id email emailSharedWith } }
    totalCount
    statusCounts { status count }
  }
}"""

AUDIT = """
query($patientId: ID) {
  auditEvents(patientId: $patientId, first: 200) { edges { node { id action patientId actorId } } }
}"""

USERNAME_AVAILABLE = """
query($u: String!, $p: ID) { usernameAvailable(username: $u, patientId: $p) { valid available reason } }"""

UPDATE = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) { patient { id } userErrors { field code } }
}"""

ENABLE = """
mutation($input: EnablePortalInput!) {
  enablePortal(input: $input) {
    results { requestedId patient { id } userErrors { field code } } userErrors { code }
  }
}"""

DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) {
    results { requestedId patient { id } userErrors { field code } } userErrors { code }
  }
}"""

SEND = """
mutation($input: SendInvitationInput!) {
  sendInvitation(input: $input) {
    results { requestedId patient { id } invitation { sentTo } userErrors { field code } }
    userErrors { code }
  }
}"""

SET_CREDENTIALS = """
mutation($input: SetCredentialsInput!) {
  setCredentials(input: $input) { account { username } userErrors { field code } }
}"""

CREATE = """
mutation($input: CreatePatientInput!) {
  createPatient(input: $input) { patient { id } userErrors { code } }
}"""


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every table: 'changed nothing' means exactly that."""
    conn = connections.get("default")
    return {
        t: sorted(
            (await conn.execute_query_dict(f"SELECT * FROM {t}")), key=lambda r: str(r.get("id"))
        )
        for t in TABLES
    }


async def data(api: Api, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    result = await api.gql(query, variables, token)
    assert "errors" not in result, result
    return result["data"]


@pytest.fixture
async def theirs(api: Api, staff: Staff) -> dict[str, str]:
    """Practice A (``staff``): an invited patient with an account and audit trail, and a
    disabled one. Returns their ids."""
    invited = await enabled_patient(
        api,
        staff.token,
        n=1,
        firstName="Zelda",
        lastName="Tenantova",
        email="zelda@family.example.com",
    )
    result = await api.gql(
        SET_CREDENTIALS, {"input": {"patientId": invited, "username": "zelda.t"}}, staff.token
    )
    assert result["data"]["setCredentials"]["userErrors"] == []
    assert (await invite(api, staff.token, invited))["userErrors"] == []
    disabled = await create_patient(api, staff.token, n=2, lastName="Tenantova", email=None)
    return {"invited": invited, "disabled": disabled}


@pytest.fixture
async def ours(api: Api, other_staff: Staff) -> str:
    """Practice B (``other_staff``): one patient sharing A's family address."""
    return await enabled_patient(
        api,
        other_staff.token,
        n=3,
        firstName="Bert",
        lastName="Own",
        email="zelda@family.example.com",
    )


# --- reads ------------------------------------------------------------------------------------


async def test_patient_of_another_practice_reads_as_null(
    api: Api, other_staff: Staff, theirs: dict[str, str], ours: str
) -> None:
    for pid in theirs.values():
        assert await data(api, PATIENT, {"id": pid}, other_staff.token) == {"patient": None}
    # and our patient with the same address does not count theirs as sharing it
    own = (await data(api, PATIENT, {"id": ours}, other_staff.token))["patient"]
    assert own["emailSharedWith"] == 0
    assert own["id"] == ours


async def test_onboarding_never_lists_or_counts_another_practice(
    api: Api, staff: Staff, other_staff: Staff, theirs: dict[str, str], ours: str
) -> None:
    # (filter, does our own patient match it, status part aside)
    for flt, ours_matches in [
        (None, True),
        ({"search": "tenantova"}, False),
        ({"search": "zelda"}, True),  # our patient's address starts with "zelda"
        ({"search": "CH00001"}, False),
        ({"search": "family.example.com"}, True),
        ({"hasEmail": False}, False),
        ({"status": ["INVITED", "DISABLED"]}, True),
    ]:
        conn = (await data(api, ONBOARDING, {"filter": flt}, other_staff.token))["onboarding"]
        ids = {e["node"]["id"] for e in conn["edges"]}
        assert not ids & set(theirs.values()), flt
        assert ids <= {ours}, flt
        assert conn["totalCount"] == len(ids), flt
        assert sum(s["count"] for s in conn["statusCounts"]) == int(ours_matches), flt
    # while practice A sees its own
    conn = (await data(api, ONBOARDING, {"filter": {"search": "tenantova"}}, staff.token))[
        "onboarding"
    ]
    assert {e["node"]["id"] for e in conn["edges"]} == set(theirs.values())


async def test_a_cursor_of_another_practice_is_refused(
    api: Api, staff: Staff, other_staff: Staff, theirs: dict[str, str], ours: str
) -> None:
    first = await api.gql(
        """query { onboarding(first: 1) { pageInfo { endCursor } } }""", token=staff.token
    )
    cursor = first["data"]["onboarding"]["pageInfo"]["endCursor"]
    result = await api.gql(ONBOARDING, {"after": cursor}, other_staff.token)
    # sealed for practice A, the cursor does not open for practice B (SPEC 8.3): a typed
    # error, and nothing of practice A
    assert result["data"] is None
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_username_available_with_another_practices_patient(
    api: Api, other_staff: Staff, theirs: dict[str, str]
) -> None:
    # their patient's own address is not "own" for staff of another practice
    check = await data(
        api,
        USERNAME_AVAILABLE,
        {"u": "zelda@family.example.com", "p": theirs["invited"]},
        other_staff.token,
    )
    assert check["usernameAvailable"]["valid"] is False
    # their patient's username is taken deployment-wide, even "for" that patient's id
    check = await data(
        api, USERNAME_AVAILABLE, {"u": "ZELDA.T", "p": theirs["invited"]}, other_staff.token
    )
    assert check["usernameAvailable"]["available"] is False


async def test_audit_events_of_another_practice_are_invisible(
    api: Api, staff: Staff, other_staff: Staff, theirs: dict[str, str], ours: str
) -> None:
    mine = (await data(api, AUDIT, {}, other_staff.token))["auditEvents"]["edges"]
    assert mine
    assert {e["node"]["patientId"] for e in mine} == {ours}
    assert {e["node"]["actorId"] for e in mine} == {str(other_staff.staff_id)}
    for pid in theirs.values():
        events = await data(api, AUDIT, {"patientId": pid}, other_staff.token)
        assert events["auditEvents"]["edges"] == []
    # practice A sees its own trail
    own = (await data(api, AUDIT, {"patientId": theirs["invited"]}, staff.token))["auditEvents"]
    assert len(own["edges"]) >= 3


# --- writes ------------------------------------------------------------------------------------


async def test_every_mutation_on_another_practices_patient_is_not_found(
    api: Api, other_staff: Staff, theirs: dict[str, str], ours: str, mailbox: Mailbox
) -> None:
    await api.deliver()  # practice A's own invitation goes out first
    mailbox.clear()
    before = await snapshot()
    invited, disabled = theirs["invited"], theirs["disabled"]

    update = await data(
        api,
        UPDATE,
        {"input": {"id": invited, "email": "thief@evil.example.com"}},
        other_staff.token,
    )
    assert update["updatePatient"] == {
        "patient": None,
        "userErrors": [{"field": ["id"], "code": "NOT_FOUND"}],
    }

    for doc, variables, name in [
        (ENABLE, {"input": {"patientIds": [disabled, invited]}}, "enablePortal"),
        (DISABLE, {"ids": [disabled, invited]}, "disablePortal"),
        (
            SEND,
            {"input": {"patientIds": [disabled, invited], "confirmSharedEmail": True}},
            "sendInvitation",
        ),
    ]:
        payload = (await data(api, doc, variables, other_staff.token))[name]
        assert payload["userErrors"] == []
        assert [r["requestedId"] for r in payload["results"]] == [disabled, invited]
        for index, row in enumerate(payload["results"]):
            assert row["patient"] is None
            assert row["userErrors"] == [
                {"field": ["patientIds", str(index)], "code": "NOT_FOUND"}
            ], name

    for username, password in [("thief.name", None), ("zelda.t", STRONG_PASSWORD)]:
        creds = await data(
            api,
            SET_CREDENTIALS,
            {"input": {"patientId": invited, "username": username, "password": password}},
            other_staff.token,
        )
        assert creds["setCredentials"] == {
            "account": None,
            "userErrors": [{"field": ["patientId"], "code": "NOT_FOUND"}],
        }

    # nothing anywhere changed, and no mail went out
    assert await snapshot() == before
    await api.deliver()
    assert mailbox.messages == []
    # and their patient still cannot be logged into with what B tried to set
    login = (await api.gql(LOGIN, {"u": "zelda.t", "p": STRONG_PASSWORD}))["data"]["login"]
    assert login["sessionToken"] is None


async def test_bulk_by_filter_stays_inside_the_practice(
    api: Api, other_staff: Staff, theirs: dict[str, str], ours: str
) -> None:
    before = await snapshot()
    enable = await data(
        api, ENABLE, {"input": {"filter": {"search": "tenantova"}}}, other_staff.token
    )
    assert enable["enablePortal"]["results"] == []
    send = await data(
        api,
        SEND,
        {"input": {"filter": {"status": ["NOT_INVITED", "INVITED"]}, "dryRun": True}},
        other_staff.token,
    )
    assert {r["requestedId"] for r in send["sendInvitation"]["results"]} <= {ours}
    assert await snapshot() == before


async def test_shared_address_across_practices_is_not_a_family_address(
    api: Api, other_staff: Staff, theirs: dict[str, str], ours: str
) -> None:
    # our patient's address is also on file in practice A: that is not "shared" for us
    send = await data(api, SEND, {"input": {"patientIds": [ours]}}, other_staff.token)
    [row] = send["sendInvitation"]["results"]
    assert row["userErrors"] == []
    assert row["invitation"] == {"sentTo": "zelda@family.example.com"}


async def test_the_same_chart_number_and_idempotency_key_in_two_practices(
    api: Api, staff: Staff, other_staff: Staff, theirs: dict[str, str]
) -> None:
    # a chart number of practice A is free in practice B (no cross-tenant collision)
    created = await data(
        api,
        CREATE,
        {
            "input": {
                "chartNumber": "CH00001",
                "firstName": "Bea",
                "lastName": "Other",
                "dateOfBirth": "1990-01-01",
            }
        },
        other_staff.token,
    )
    assert created["createPatient"]["userErrors"] == []
    pid = created["createPatient"]["patient"]["id"]
    # an idempotency key used by practice A does not replay A's result for practice B
    a = await data(
        api,
        ENABLE,
        {"input": {"patientIds": [theirs["disabled"]], "idempotencyKey": "k-1"}},
        staff.token,
    )
    assert a["enablePortal"]["results"][0]["userErrors"] == []
    b = await data(
        api, ENABLE, {"input": {"patientIds": [pid], "idempotencyKey": "k-1"}}, other_staff.token
    )
    assert b["enablePortal"]["userErrors"] == []
    assert [r["requestedId"] for r in b["enablePortal"]["results"]] == [pid]
    assert b["enablePortal"]["results"][0]["userErrors"] == []


# --- authentication ------------------------------------------------------------------------------

def _sample(type_: Any) -> Any:
    """A valid value of an input type, so the request reaches the permission check."""
    if isinstance(type_, GraphQLNonNull):
        return _sample(type_.of_type)
    if isinstance(type_, GraphQLList):
        return [_sample(type_.of_type)]
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {
            name: _sample(f.type)
            for name, f in type_.fields.items()
            if isinstance(f.type, GraphQLNonNull)
        }
    return {"ID": "1", "String": "x", "Int": 1, "Boolean": False, "Date": "1990-01-01"}.get(
        type_.name, "x"
    )


def _selection(type_: Any) -> str:
    named = get_named_type(type_)
    return " { __typename }" if isinstance(named, (GraphQLObjectType, GraphQLInterfaceType)) else ""


def staff_operations_from_schema() -> list[tuple[str, dict[str, Any]]]:
    """Every root field schema.graphql marks @staffOnly, as a request with valid
    arguments: the list follows the schema, so a new staff field is covered at once."""
    schema = build_schema(sdl())
    operations = []
    for kind, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        assert root is not None
        for name, field in root.fields.items():
            node = field.ast_node
            directives = [d.name.value for d in (node.directives or ())] if node else []
            if "staffOnly" not in directives:
                continue
            required = {a: arg for a, arg in field.args.items() if isinstance(arg.type, GraphQLNonNull)}
            params = ", ".join(f"${a}: {arg.type}" for a, arg in required.items())
            args = ", ".join(f"{a}: ${a}" for a in required)
            document = (
                f"{kind}{f'({params})' if params else ''} "
                f"{{ {name}{f'({args})' if args else ''}{_selection(field.type)} }}"
            )
            operations.append((document, {a: _sample(arg.type) for a, arg in required.items()}))
    return operations


STAFF_OPERATIONS = staff_operations_from_schema()
# What may run without a staff token: the patient app's and the login screen's fields.
PUBLIC_FIELDS = {
    "tokenInfo", "requestSelfReset", "requestUsernameReminder", "redeemToken", "login",
    "changePassword", "logout", "me",
}


def test_every_root_field_is_either_staff_only_or_deliberately_public() -> None:
    schema = build_schema(sdl())
    staff = {op.split("{ ", 1)[1].split("(")[0].split(" ")[0] for op, _ in STAFF_OPERATIONS}
    roots = set(schema.query_type.fields) | set(schema.mutation_type.fields)  # type: ignore[union-attr]
    assert roots - staff == PUBLIC_FIELDS
    # the staff fields the Onboarding Tool is built on are among them
    assert {"patient", "onboarding", "node", "nodes", "sendInvitation", "setCredentials"} <= staff


@pytest.fixture
async def bad_tokens(api: Api, staff: Staff, theirs: dict[str, str]) -> dict[str, dict[str, str]]:
    """Authorization headers that must not pass as staff."""
    # a patient session is not a staff token
    pid = await enabled_patient(api, staff.token, n=9, email=None)
    creds = await api.gql(
        SET_CREDENTIALS,
        {"input": {"patientId": pid, "username": "patient.nine", "password": STRONG_PASSWORD}},
        staff.token,
    )
    assert creds["data"]["setCredentials"]["userErrors"] == []
    login = (await api.gql(LOGIN, {"u": "patient.nine", "p": STRONG_PASSWORD}))["data"]["login"]
    assert login["sessionToken"]
    # a deactivated staff user's token
    gone_token = "stf_former-employee-token"
    await StaffUser.create(
        practice_id=staff.practice_id, name="Gone", token_digest=digest(gone_token), active=False
    )
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer garbage"},
        "unknown staff": {"Authorization": "Bearer stf_" + "A" * 43},
        "staff token with another scheme": {"Authorization": f"Basic {staff.token}"},
        "staff token without scheme": {"Authorization": staff.token},
        "token with trailing junk": {"Authorization": f"Bearer {staff.token}x"},
        "oversized": {"Authorization": "Bearer stf_" + "A" * 5000},
        "patient session": {"Authorization": f"Bearer {login['sessionToken']}"},
        "deactivated staff": {"Authorization": f"Bearer {gone_token}"},
    }


async def test_staff_operations_need_a_valid_staff_token(
    api: Api, staff: Staff, theirs: dict[str, str], bad_tokens: dict[str, dict[str, str]]
) -> None:
    before = await snapshot()
    for label, headers in bad_tokens.items():
        for query, variables in STAFF_OPERATIONS:
            response = await api.client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
            assert response.status_code == 200, (label, response.text)
            body = response.json()
            # nothing is answered: data is null, or the nullable root field is
            assert body["data"] is None or set(body["data"].values()) == {None}, (label, body)
            codes = [e["extensions"]["code"] for e in body["errors"]]
            assert codes == ["UNAUTHENTICATED"], (label, query, body)
            assert "Traceback" not in response.text
    assert await snapshot() == before
