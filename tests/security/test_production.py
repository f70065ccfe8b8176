"""Production hardening: configuration refusals, introspection, suggestions and GraphiQL
(SECURITY GQL-5, GQL-6, TOK-8; SPEC section 5)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError

from core.settings import Settings
from tests.conftest import Api

PRODUCTION = {"env": "production", "allow_insecure_defaults": True}

SAFE = {
    "env": "production",
    "database_url": "postgres://portal@db.internal:5432/portal",
    "mail_backend": "smtp",
    "sms_backend": "twilio",
    "twilio_account_sid": "AC0123456789abcdef0123456789abcdef",
    "twilio_auth_token": "not-a-real-token",
    "twilio_from": "+16175550100",
    "link_base_url": "https://portal.clinic.example/activate",
}


@pytest.fixture(autouse=True)
def no_portal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"database_url": "sqlite://portal.sqlite3"}, "SQLite"),
        ({"mail_backend": "file"}, "MAIL_BACKEND"),
        ({"mail_backend": "console"}, "MAIL_BACKEND"),
        ({"link_base_url": "http://portal.clinic.example/activate"}, "https"),
        ({"sms_backend": "file"}, "SMS_BACKEND"),
        ({"sms_backend": "console"}, "SMS_BACKEND"),
    ],
    ids=["sqlite", "file-mail", "console-mail", "http-link", "file-sms", "console-sms"],
)
def test_production_refuses_development_defaults(change: dict[str, Any], complaint: str) -> None:
    """TOK-8 (HTTPS links), SPEC 5: Settings refuse production with SQLite, file/console
    mail or a plain-http link base unless PORTAL_ALLOW_INSECURE_DEFAULTS says so."""
    assert settings(**SAFE).is_production
    with pytest.raises(ValidationError) as refused:
        settings(**{**SAFE, **change})
    assert complaint in str(refused.value)
    allowed = settings(**{**SAFE, **change}, allow_insecure_defaults=True)
    assert allowed.is_production


def test_production_refuses_the_bare_defaults() -> None:
    """SPEC 5: PORTAL_ENV=production alone (everything else default) does not start."""
    with pytest.raises(ValidationError):
        settings(env="production")
    assert not settings().is_production  # development is the default


@pytest.mark.parametrize("settings_overrides", [PRODUCTION])
async def test_introspection_is_off_in_production(api: Api) -> None:
    """GQL-5: __schema and __type are refused in production; __typename still works."""
    for query in ("{ __schema { types { name } } }", '{ __type(name: "Patient") { fields { name } } }'):
        response = await api.client.post("/graphql", json={"query": query})
        body = response.json()
        assert body.get("data") is None
        assert "introspection has been disabled" in body["errors"][0]["message"]
    assert (await api.gql("{ __typename }"))["data"] == {"__typename": "Query"}


async def test_introspection_is_on_in_development(api: Api) -> None:
    """GQL-5 (control): development keeps introspection for GraphiQL."""
    result = await api.gql("{ __schema { queryType { name } } }")
    assert result["data"]["__schema"]["queryType"]["name"] == "Query"


MISSPELLINGS = {
    "field": "{ patien(id: 1) { id } }",
    "argument": "{ patient(idd: 1) { id } }",
    "input_field": 'mutation { login(input: {username: "x", pasword: "y"}) { sessionToken } }',
    "enum_value": (
        'mutation { createPatient(input: {chartNumber: "1", firstName: "a", lastName: "b", '
        'dateOfBirth: "1980-01-01", chartStatus: ACTIV}) { patient { id } } }'
    ),
    "type_name": "query($x: LoginInpt) { __typename }",
    "variable_input_field": (
        "mutation($i: LoginInput!) { login(input: $i) { sessionToken } }",
        {"i": {"username": "x", "password": "y", "pasword": "z"}},
    ),
}


@pytest.mark.parametrize("settings_overrides", [PRODUCTION])
@pytest.mark.parametrize("case", list(MISSPELLINGS), ids=list(MISSPELLINGS))
async def test_no_suggestions_in_production(api: Api, case: str) -> None:
    """GQL-6: production error messages never say "Did you mean …" (fields, arguments,
    input fields, enum values, type names, variables), so the schema cannot be inferred."""
    document = MISSPELLINGS[case]
    query, variables = document if isinstance(document, tuple) else (document, {})
    response = await api.client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code in (200, 400)
    assert "errors" in response.json(), response.text
    assert "Did you mean" not in response.text, response.text


async def test_suggestions_stay_in_development(api: Api) -> None:
    """GQL-6 (control): development keeps suggestions, so the production test is meaningful."""
    response = await api.client.post("/graphql", json={"query": MISSPELLINGS["field"]})
    assert "Did you mean" in response.text


@pytest.mark.parametrize("settings_overrides", [PRODUCTION])
async def test_graphiql_is_absent_in_production(api: Api) -> None:
    """GQL-5: no GraphiQL page (graphql_ide=None) in production."""
    for accept in ("text/html", "*/*"):
        response = await api.client.get("/graphql", headers={"accept": accept})
        assert response.status_code in (404, 405), response.status_code
        assert "graphiql" not in response.text.lower()


async def test_graphiql_is_served_in_development(api: Api) -> None:
    """GQL-5 (control): development serves GraphiQL at /graphql (SPEC 5)."""
    response = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200 and "graphiql" in response.text.lower()
