"""docs/deploy.md, run: the documented environment file and systemd units' commands start
2 API processes and 2 mail workers on PostgreSQL and Redis on this machine, and a patient
is onboarded end to end through them (issue 12 item 6). The TLS proxy is not started.
PostgreSQL (production refuses SQLite) and a Redis on 127.0.0.1:6379 (db 12) required."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, free_port, token_from
from tests.faults.harness import (
    ROOT,
    SmtpServer,
    database_url,
    drop_database,
    recreate_database,
)

DOC = ROOT / "docs" / "deploy.md"
PORTAL = "/opt/portal/venv/bin/portal"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(BACKEND != "postgres", reason="needs PostgreSQL"),
    pytest.mark.skipif(not _redis_up(), reason="needs Redis on 127.0.0.1:6379"),
]


def block(name: str) -> str:
    match = re.search(rf"```ini {re.escape(name)}\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/deploy.md has no `ini {name}` block"
    return match.group(1)


def documented_env() -> dict[str, str]:
    env = {}
    for line in block("portal.env").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def unit_commands(unit: str, instance: str) -> list[list[str]]:
    """ExecStartPre and ExecStart, in order, with %i and the install path replaced."""
    commands = []
    for line in block(unit).splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStartPre", "ExecStart"):
            argv = shlex.split(value.replace("%i", instance))
            assert argv[0] == PORTAL, argv
            commands.append([str(ROOT / ".venv" / "bin" / "portal"), *argv[1:]])
    assert commands and shlex.join(commands[-1]).count("portal") >= 1
    return commands


def gql(base: str, query: str, variables: dict | None = None, token: str | None = None) -> dict:
    headers = {"X-Forwarded-For": "198.51.100.23"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    answer = httpx.post(
        base + "/graphql",
        json={"query": query, "variables": variables or {}},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> dict:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            answer = httpx.get(base + "/readyz", timeout=2)
            if answer.status_code == 200:
                return dict(answer.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{base} never became ready")


def test_documented_layout_onboards_a_patient(tmp_path: Path) -> None:
    url = database_url("deploy")
    asyncio.run(recreate_database(url))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    with SmtpServer() as smtp:
        smtp_port = smtp.port
        settings = documented_env()
        # This machine's services instead of the documented hosts; everything else as written.
        settings.update(
            {
                "PORTAL_DATABASE_URL": url,
                "PORTAL_REDIS_URL": "redis://127.0.0.1:6379/12",
                "PORTAL_SMTP_HOST": "127.0.0.1",
                "PORTAL_SMTP_PORT": str(smtp_port),
                # The local SMTP server speaks no TLS: the one production rule relaxed.
                "PORTAL_SMTP_TLS": "none",
                "PORTAL_ALLOW_INSECURE_DEFAULTS": "true",
                "PORTAL_TRUSTED_PROXIES": '["127.0.0.1/32"]',
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            }
        )
        del settings["PORTAL_SMTP_USERNAME"], settings["PORTAL_SMTP_PASSWORD"]
        assert settings["PORTAL_ENV"] == "production"
        assert settings["PORTAL_MAIL_DISPATCH_IN_SERVER"] == "false"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
        env.update(settings)
        subprocess.run(
            ["redis-cli", "-n", "12", "FLUSHDB"], check=False, capture_output=True, timeout=10
        )

        def start(argv: list[str], name: str) -> subprocess.Popen[bytes]:
            with (tmp_path / f"{name}.log").open("wb") as log:
                proc = subprocess.Popen(
                    argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            procs.append(proc)
            return proc

        try:
            apis = []
            for port in (free_port(), free_port()):
                *pre, main = unit_commands("portal-api@.service", str(port))
                for argv in pre:
                    subprocess.run(
                        argv, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120
                    )
                apis.append((f"http://127.0.0.1:{port}", start(main, f"api-{port}")))
            for n in (1, 2):
                [main] = unit_commands("portal-mail-worker@.service", str(n))
                start(main, f"worker-{n}")
            for base, proc in apis:
                checks = wait_ready(base, proc)["checks"]
                assert checks == {
                    "database": "ok",
                    "migrations": "ok",
                    "redis": "ok",
                    "outbox": "ok",
                }
            (a, _), (b, _) = apis

            cli = [str(ROOT / ".venv" / "bin" / "portal")]
            practice = subprocess.run(
                [*cli, "create-practice", "--name", "Maple Street Clinic"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout.split()[-1]
            staff = subprocess.run(
                [*cli, "create-staff", "--practice", practice, "--name", "Front desk"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout.split()[-1]

            # staff onboard a patient through the first API process
            created = gql(
                a,
                'mutation { createPatient(input: {chartNumber: "A-1", firstName: "Rosa", lastName: "Diaz",'
                ' dateOfBirth: "1984-03-09", email: "rosa.diaz@example.com", zipCode: "02139"})'
                " { patient { id } userErrors { code } } }",
                token=staff,
            )["data"]["createPatient"]
            pid = created["patient"]["id"]
            gql(
                a,
                "mutation($i: [ID!]!) { enablePortal(input: {patientIds: $i}) { userErrors { code } } }",
                {"i": [pid]},
                staff,
            )
            sent = gql(
                a,
                "mutation($i: [ID!]!) { sendInvitation(input: {patientIds: $i}) { results { userErrors { code } } } }",
                {"i": [pid]},
                staff,
            )
            assert sent["data"]["sendInvitation"]["results"][0]["userErrors"] == []
            # a mail worker delivers it
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not smtp.accepted:
                time.sleep(0.2)
            assert dict(smtp.accepted) == {"rosa.diaz@example.com": 1}
            message = smtp.messages[-1]
            link_token = token_from(message)
            assert "https://portal.clinic.example/activate#token=" in message.as_string()

            # the patient redeems and logs in through the second API process
            redeemed = gql(
                b,
                'mutation($t: String!) { redeemToken(input: {token: $t, username: "rosa.diaz",'
                ' password: "lantern-orchard-velvet"}) { account { username } userErrors { code } } }',
                {"t": link_token},
            )["data"]["redeemToken"]
            assert redeemed == {"account": {"username": "rosa.diaz"}, "userErrors": []}
            login = gql(
                b,
                'mutation { login(input: {username: "rosa.diaz", password: "lantern-orchard-velvet"})'
                " { sessionToken userErrors { code } } }",
            )["data"]["login"]
            assert login["sessionToken"].startswith("ses_")
            # choosing the first password queues an account_ready notice: both mails arrive
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and sum(smtp.accepted.values()) < 2:
                time.sleep(0.2)
            assert dict(smtp.accepted) == {"rosa.diaz@example.com": 2}
            assert "account is ready" in str(smtp.messages[-1]["Subject"])

            # one login budget for both processes (Redis): 10/minute per address by default
            codes = []
            for i in range(11):
                answer = gql(
                    (a, b)[i % 2],
                    'mutation { login(input: {username: "nobody", password: "wrong-password-1"})'
                    " { userErrors { code } } }",
                )["data"]["login"]
                codes.append([e["code"] for e in answer["userErrors"]])
            assert codes[-1] == ["RATE_LIMITED"], codes

            # /metrics on either process counts the whole host: both APIs and the workers.
            # A worker counts a delivery after recording it, a moment after the SMTP server
            # accepted it (the CI failure of stop 28 read /metrics in between): wait for it.
            def sample(text: str, prefix: str) -> float:
                return sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith(prefix)
                )

            deadline = time.monotonic() + 30
            while True:
                text = httpx.get(a + "/metrics", timeout=10).text
                delivered = sample(text, 'portal_mail_deliveries_total{outcome="delivered"}')
                if delivered >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert delivered == sum(smtp.accepted.values()) == 2
            assert sample(text, 'portal_graphql_requests_total{operation="login"') == 12
            assert "portal_worker_heartbeat_timestamp_seconds" in text
        finally:
            stopped = []
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    stopped.append(proc.wait(30))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    stopped.append(None)
            asyncio.run(drop_database(url))
    # SIGTERM stops every process cleanly: uvicorn shuts down gracefully, then re-raises
    # the signal (systemd counts SIGTERM as a clean stop); the workers exit 0
    assert stopped == [-signal.SIGTERM, -signal.SIGTERM, 0, 0], stopped
    for log in tmp_path.glob("api-*.log"):
        assert "Application shutdown complete" in log.read_text()
