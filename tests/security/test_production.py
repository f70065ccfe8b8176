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
    "smtp_tls": "starttls",
    "sms_backend": "twilio",
    "twilio_account_sid": "AC0123456789abcdef0123456789abcdef",
    "twilio_auth_token": "not-a-real-token",
    "twilio_from": "+16175550100",
    "link_base_url": "https://portal.clinic.example/activate",
    "secret_key": "a-production-secret-shared-by-every-host",
}


@pytest.fixture(autouse=True)
def no_portal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_production_accepts_a_clinic_that_does_not_text() -> None:
    values = {k: v for k, v in SAFE.items() if not k.startswith("twilio_")}
    assert settings(**{**values, "sms_backend": "off"}).is_production


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"database_url": "sqlite://portal.sqlite3"}, "SQLite"),
        ({"mail_backend": "file"}, "MAIL_BACKEND"),
        ({"mail_backend": "console"}, "MAIL_BACKEND"),
        ({"link_base_url": "http://portal.clinic.example/activate"}, "https"),
        ({"smtp_tls": "none"}, "PORTAL_SMTP_TLS"),
        ({"secret_key": None}, "PORTAL_SECRET_KEY"),
        ({"secret_key": ""}, "PORTAL_SECRET_KEY"),
        ({"sms_backend": "file"}, "SMS_BACKEND"),
        ({"sms_backend": "console"}, "SMS_BACKEND"),
        ({"webhook_allow_private": True}, "PORTAL_WEBHOOK_ALLOW_PRIVATE"),
    ],
    ids=[
        "sqlite",
        "file-mail",
        "console-mail",
        "http-link",
        "smtp-in-clear",
        "no-key",
        "empty-key",
        "file-sms",
        "console-sms",
        "webhooks-to-private-addresses",
    ],
)
def test_production_refuses_development_defaults(change: dict[str, Any], complaint: str) -> None:
    """TOK-8 (HTTPS links), SPEC 5: Settings refuse production with SQLite, file/console
    mail or a plain-http link base unless PORTAL_ALLOW_INSECURE_DEFAULTS says so."""
    assert settings(**SAFE).is_production
    # a None in the change leaves that setting out (its default applies)
    values = {k: v for k, v in {**SAFE, **change}.items() if v is not None}
    with pytest.raises(ValidationError) as refused:
        settings(**values)
    assert complaint in str(refused.value)
    allowed = settings(**values, allow_insecure_defaults=True)
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


def test_implicit_tls_is_accepted_and_keys_must_be_long() -> None:
    assert settings(**{**SAFE, "smtp_tls": "tls"}).is_production
    with pytest.raises(ValidationError) as refused:
        settings(**{**SAFE, "secret_key": "short"})
    assert "PORTAL_SECRET_KEY must be at least 32" in str(refused.value)


def test_each_relaxed_rule_is_one_warning(capsys: pytest.CaptureFixture[str]) -> None:
    """PORTAL_ALLOW_INSECURE_DEFAULTS=true starts, and says once per start which rule it
    relaxed: one warning line each, naming the setting."""
    from graph.app import create_app

    values = {**SAFE, "smtp_tls": "none", "database_url": "sqlite://x"}
    del values["secret_key"]  # unset: the development file secret, not a production one
    relaxed = settings(**values, allow_insecure_defaults=True)
    capsys.readouterr()
    create_app(relaxed, manage_database=False).state.services.hasher.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if "insecure_default_allowed" in line]
    assert len(lines) == 3, lines
    for setting in ("PORTAL_DATABASE_URL", "PORTAL_SMTP_TLS", "PORTAL_SECRET_KEY"):
        assert sum(setting in line for line in lines) == 1, (setting, lines)
    assert all('"level": "warning"' in line or "warning" in line for line in lines)


# ------------------------------------------------------------------ start-up failures


def portal(tmp_path: Any, *args: str, **env: str) -> Any:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    clean.update({"PORTAL_DATABASE_URL": f"sqlite://{tmp_path}/p.sqlite3", **env})
    return subprocess.run(  # noqa: S603
        [sys.executable, str(root / "portal_cli.py"), *args],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120,
    )


PASSWORDS = {
    "db": "db-pass-Zq81",
    "smtp": "smtp-pass-Xy72",
    "redis": "redis-pass-Wv63",
    "key": "short-key-Ab12",
}
PRODUCTION_ENV = {
    "PORTAL_ENV": "production",
    "PORTAL_MAIL_BACKEND": "smtp",
    "PORTAL_SMTP_PASSWORD": PASSWORDS["smtp"],
    "PORTAL_LINK_BASE_URL": "https://portal.clinic.example/activate",
    "PORTAL_SMS_BACKEND": "twilio",
    "PORTAL_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "PORTAL_TWILIO_AUTH_TOKEN": "t" * 32,
    "PORTAL_TWILIO_FROM": "+15005550006",
}
STARTUP_FAILURES = {
    "production_refusal": (
        ["serve"],
        {**PRODUCTION_ENV, "PORTAL_DATABASE_URL": f"postgres://portal:{PASSWORDS['db']}@127.0.0.1:1/portal"},
        ["PORTAL_SMTP_TLS", "PORTAL_SECRET_KEY"],
    ),
    "bad_number": (["migrate"], {"PORTAL_MAX_COST": "lots", "PORTAL_SMTP_PASSWORD": PASSWORDS["smtp"]}, ["PORTAL_MAX_COST"]),
    "short_key": (["migrate"], {"PORTAL_SECRET_KEY": PASSWORDS["key"]}, ["PORTAL_SECRET_KEY"]),
    "bad_choice": (["migrate"], {"PORTAL_SMTP_TLS": PASSWORDS["smtp"]}, ["PORTAL_SMTP_TLS"]),
    "database_unreachable": (
        ["migrate"],
        {"PORTAL_DATABASE_URL": f"postgres://portal:{PASSWORDS['db']}@127.0.0.1:1/portal"},
        ["PORTAL_DATABASE_URL", "127.0.0.1:1"],
    ),
    "database_unopenable": (
        ["create-practice", "--name", "X"],
        {"PORTAL_DATABASE_URL": "sqlite:///nonexistent-dir/deeper/p.sqlite3"},
        ["PORTAL_DATABASE_URL"],
    ),
    "redis_unreachable": (
        ["serve", "--port", "1"],
        {"PORTAL_REDIS_URL": f"redis://:{PASSWORDS['redis']}@127.0.0.1:1/10"},
        ["PORTAL_REDIS_URL", "127.0.0.1:1"],
    ),
    "workers_without_redis": (
        ["serve", "--workers", "2"],
        {
            **PRODUCTION_ENV,
            "PORTAL_SMTP_TLS": "starttls",
            "PORTAL_SECRET_KEY": "s" * 43,
            "PORTAL_DATABASE_URL": f"postgres://portal:{PASSWORDS['db']}@127.0.0.1:1/portal",
        },
        ["PORTAL_REDIS_URL", "--workers"],
    ),
}


@pytest.mark.parametrize("case", list(STARTUP_FAILURES), ids=list(STARTUP_FAILURES))
def test_startup_failures_are_one_clear_line(tmp_path: Any, case: str) -> None:
    """Every start-up failure is one line naming the setting, with no secret value and
    no traceback, and a non-zero exit code."""
    args, env, named = STARTUP_FAILURES[case]
    result = portal(tmp_path, *args, **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for name in named:
        assert name in lines[0], (name, lines[0])
    assert "Traceback" not in result.stderr and "input_value" not in result.stderr
    for secret in PASSWORDS.values():
        assert secret not in result.stderr + result.stdout
