"""SPEC 8.1 at the HTTP level: preflights answered for listed origins only, strictly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.conftest import make_settings

EMR = "https://emr.clinic.test"


@pytest.fixture
def settings_overrides() -> dict:
    return {"cors_origins": [EMR, "http://localhost:5173"]}


def preflight(origin: str, headers: str = "authorization,content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers,
    }


async def test_preflight_from_listed_origin(api) -> None:
    response = await api.client.options("/graphql", headers=preflight(EMR))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == EMR
    assert response.headers["access-control-allow-methods"] == "POST"
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert "access-control-allow-credentials" not in response.headers
    # Preflights pass through the protective middleware like every other answer.
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]


async def test_preflight_from_unlisted_origin_gets_no_cors_headers(api) -> None:
    for origin in ("https://evil.test", "https://emr.clinic.test.evil.test", "null", EMR + ":443"):
        response = await api.client.options("/graphql", headers=preflight(origin))
        assert response.status_code == 400, origin
        assert not [h for h in response.headers if h.lower().startswith("access-control-")], origin


async def test_preflight_refuses_other_methods_and_headers(api) -> None:
    response = await api.client.options(
        "/graphql", headers={**preflight(EMR), "Access-Control-Request-Method": "PUT"}
    )
    assert response.status_code == 400
    response = await api.client.options("/graphql", headers=preflight(EMR, "x-custom"))
    assert response.status_code == 400


async def test_actual_request_from_listed_origin_is_readable(api, staff) -> None:
    response = await api.client.post(
        "/graphql",
        json={"query": "{ onboarding { totalCount } }"},
        headers={"Origin": EMR, "Authorization": f"Bearer {staff.token}"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == EMR
    assert "origin" in response.headers["vary"].lower()
    other = await api.client.post(
        "/graphql",
        json={"query": "{ onboarding { totalCount } }"},
        headers={"Origin": "https://evil.test", "Authorization": f"Bearer {staff.token}"},
    )
    assert "access-control-allow-origin" not in other.headers


async def test_no_origin_is_listed_by_default(database, smtp_server) -> None:
    assert make_settings(database, smtp_server[1]).cors_origins == []


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "https://emr.test/",
        "https://emr.test/app",
        "emr.test",
        "https://EMR.test",
        "https://*.emr.test",
        "ftp://emr.test",
    ],
)
def test_origins_must_be_exact(origin) -> None:
    with pytest.raises(ValidationError):
        make_settings("sqlite", 25, cors_origins=[origin])
