"""SPEC 8.4 (@specifiedBy scalars, application/graphql-response+json) and SPEC 8.5
(persisted operations: hash-only requests, PERSISTED_QUERY_NOT_FOUND, trusted documents)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from graph.persisted import TrustedDocumentsError, load_manifest
from tests.conftest import Api, Staff
from tests.helpers import ENABLE, create_patient, invite

ONBOARDING = "query Onboarding { onboarding(first: 5) { totalCount edges { node { id } } } }"
GRAPHQL_RESPONSE = "application/graphql-response+json"


def sha(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def persisted(document: str) -> dict:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(document)}}


async def test_date_scalars_are_specified_by_rfc3339(api: Api, staff: Staff, mailbox) -> None:
    result = await api.gql(
        '{ __type(name: "DateTime") { specifiedByURL } d: __type(name: "Date") { specifiedByURL } }',
        token=staff.token,
    )
    assert "rfc3339" in result["data"]["__type"]["specifiedByURL"]
    assert "rfc3339" in result["data"]["d"]["specifiedByURL"]
    # and the values are RFC 3339: dates plain, instants with their UTC offset
    pid = await create_patient(api, staff.token)
    await api.gql(ENABLE, {"ids": [pid]}, staff.token)
    sent = await invite(api, staff.token, pid)
    expires = sent["invitation"]["expiresAt"]
    assert datetime.fromisoformat(expires).utcoffset() is not None, expires


async def test_graphql_response_json_when_accepted(api: Api, staff: Staff) -> None:
    headers = {"Authorization": f"Bearer {staff.token}", "Accept": GRAPHQL_RESPONSE}
    ok = await api.client.post("/graphql", json={"query": ONBOARDING}, headers=headers)
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert ok.json()["data"]["onboarding"]["totalCount"] == 0
    # a request error (invalid document) has no data entry and a 4xx with this type
    bad = await api.client.post("/graphql", json={"query": "{ nope }"}, headers=headers)
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert "data" not in bad.json() and bad.json()["errors"]
    # a field error is not a request error: 200, data present
    anonymous = await api.client.post(
        "/graphql", json={"query": ONBOARDING}, headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert anonymous.status_code == 200 and "data" in anonymous.json()
    # clients that accept only application/json keep getting it, with 200
    legacy = await api.client.post(
        "/graphql", json={"query": "{ nope }"}, headers={"Accept": "application/json"}
    )
    assert legacy.status_code == 200
    assert legacy.headers["content-type"].startswith("application/json")


async def test_hash_only_request_falls_back_then_runs(api: Api, staff: Staff) -> None:
    """Apollo's PersistedQueryLink: hash alone, PERSISTED_QUERY_NOT_FOUND, then hash and
    text, then the hash alone works. It used to be a text/plain 400."""
    headers = {"Authorization": f"Bearer {staff.token}"}
    first = await api.client.post("/graphql", json={"extensions": persisted(ONBOARDING)}, headers=headers)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/json")
    [error] = first.json()["errors"]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

    both = await api.client.post(
        "/graphql", json={"query": ONBOARDING, "extensions": persisted(ONBOARDING)}, headers=headers
    )
    assert both.json()["data"]["onboarding"]["totalCount"] == 0
    again = await api.client.post("/graphql", json={"extensions": persisted(ONBOARDING)}, headers=headers)
    assert again.json() == both.json()


async def test_a_hash_that_does_not_match_its_text_is_refused(api: Api, staff: Staff) -> None:
    result = await api.client.post(
        "/graphql",
        json={"query": ONBOARDING, "extensions": persisted("{ __typename }")},
        headers={"Authorization": f"Bearer {staff.token}"},
    )
    assert result.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # and the wrong pairing was not registered under that hash
    later = await api.client.post("/graphql", json={"extensions": persisted("{ __typename }")})
    assert later.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_invalid_documents_are_not_registered(api: Api) -> None:
    await api.client.post("/graphql", json={"query": "{ nope }", "extensions": persisted("{ nope }")})
    result = await api.client.post("/graphql", json={"extensions": persisted("{ nope }")})
    assert result.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"




@pytest.fixture
def settings_overrides(request, tmp_path: Path) -> dict:
    if "trusted" not in request.node.name:
        return {}
    manifest = tmp_path / "trusted.json"
    manifest.write_text(json.dumps({sha(ONBOARDING): ONBOARDING}))
    return {"trusted_documents": str(manifest)}


async def test_trusted_documents_only_run_the_manifest(api: Api, staff: Staff) -> None:
    headers = {"Authorization": f"Bearer {staff.token}"}
    by_hash = await api.client.post("/graphql", json={"extensions": persisted(ONBOARDING)}, headers=headers)
    assert by_hash.json()["data"]["onboarding"]["totalCount"] == 0
    by_text = await api.client.post("/graphql", json={"query": ONBOARDING}, headers=headers)
    assert by_text.json()["data"]["onboarding"]["totalCount"] == 0
    other = "{ onboarding { totalCount } }"
    for body in ({"query": other}, {"query": other, "extensions": persisted(other)}):
        refused = await api.client.post("/graphql", json=body, headers=headers)
        assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
    unknown = await api.client.post("/graphql", json={"extensions": persisted(other)}, headers=headers)
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


def test_a_manifest_entry_whose_hash_is_wrong_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({sha("{ a }"): "{ b }"}))
    with pytest.raises(TrustedDocumentsError):
        load_manifest(str(bad))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"operations": {f"sha256:{sha('{ a }')}": "{ a }"}}))
    assert load_manifest(str(good)) == {sha("{ a }"): "{ a }"}
