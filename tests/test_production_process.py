"""The real `portal serve` in production mode, as separate processes (issue 12 item 5):
JSON-only logs (uvicorn's included), metrics summed over 2 uvicorn workers, probes, and a
database dropped under the API answering GraphQL-shaped JSON, not plain-text 500s.
PostgreSQL only (production refuses SQLite)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, free_port
from tests.faults.harness import ROOT, database_url, drop_database, recreate_database

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="needs PostgreSQL")


def production_env(url: str) -> dict[str, str]:
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PORTAL_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {
            "PORTAL_ENV": "production",
            "PORTAL_DATABASE_URL": url,
            "PORTAL_MAIL_BACKEND": "smtp",
            "PORTAL_SMTP_PORT": str(free_port()),
            "PORTAL_LINK_BASE_URL": "https://portal.clinic.test/activate",
            "PORTAL_MAIL_DISPATCH_IN_SERVER": "false",
            "PORTAL_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "PORTAL_SECRET_KEY": "a-production-secret-shared-by-every-host",
            # Several API processes share rate limits through Redis (required in production).
            "PORTAL_REDIS_URL": "redis://127.0.0.1:6379/12",
            # The local SMTP server speaks no TLS: the one production rule relaxed.
            "PORTAL_ALLOW_INSECURE_DEFAULTS": "true",
        }
    )
    return env


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "portal_cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def wait_ready(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the API never became ready")


def test_production_api_processes(tmp_path: Path) -> None:
    url = database_url("api")
    asyncio.run(recreate_database(url))
    env = production_env(url)
    practice = cli(env, "create-practice", "--name", "Maple Street Clinic")
    token = cli(env, "create-staff", "--practice", practice, "--name", "Dana")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portal_cli", "serve", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(base)
            staff = {"Authorization": f"Bearer {token}"}
            query = {"query": "{ __typename }"}
            with httpx.Client(base_url=base, timeout=10) as client:
                # 40 requests over fresh connections land on both workers; /metrics,
                # whichever worker answers, counts all of them
                for _ in range(40):
                    with httpx.Client(base_url=base, timeout=10) as one:
                        assert one.post("/graphql", json=query, headers=staff).status_code == 200
                text = client.get("/metrics").text
                total = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith('portal_graphql_requests_total{operation="__typename"')
                )
                assert total == 40, text[:3000]
                # an id from a trusted proxy follows the request
                echoed = client.get("/healthz", headers={"X-Request-Id": "edge-77"})
                assert echoed.headers["x-request-id"] == "edge-77"
                # a query string reaches no log line: uvicorn's own access line (which
                # carries it) stays off, PortalMiddleware's line has the path only
                client.get(
                    "/graphql",
                    params={"query": '{ tokenInfo(token: "query-string-secret") { valid } }'},
                )

                # when the database is dropped under the API
                asyncio.run(drop_database(url))
                answer = client.post("/graphql", json=query, headers=staff)
                # then staff get a JSON error with a code, not a plain-text 500
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"].startswith("application/json")
                assert answer.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                # and the probes tell liveness from readiness
                assert client.get("/healthz").status_code == 200
                ready = client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"]["database"].startswith("unreachable")
        finally:
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            stopped_in = time.monotonic() - start
            asyncio.run(drop_database(url))
    assert stopped_in < 15
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    # every line JSON, uvicorn's own start-up lines included
    assert not not_json, not_json[:10]
    assert any("Started server process" in ln for ln in lines)
    assert any('"event": "http.request"' in ln for ln in lines)
    assert not any('"logger": "uvicorn.access"' in ln for ln in lines), lines[-5:]
    assert not any("query-string-secret" in ln for ln in lines)
