"""Probes, metrics, request ids and 5xx bodies (issue 12 item 5)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from core.clock import utcnow
from models import OutboxMessage, OutboxStatus
from tests.conftest import Api, Mailbox, Staff, free_port
from tests.helpers import enabled_patient, invite
from tests.security.support import login


async def test_healthz_is_liveness_and_readyz_checks_dependencies(api: Api) -> None:
    health = await api.client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {
            "database": "ok",
            "migrations": "ok",
            "redis": "not configured",
            "outbox": "ok",
        },
    }


async def test_readyz_reports_a_stuck_outbox(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given a message that has been due for an hour and nobody sent it
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await OutboxMessage.all().update(next_attempt_at=utcnow() - timedelta(hours=1))
    # then the process is not ready, and says why
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert re.fullmatch(r"stuck: a message is 36\d\d s overdue", body["checks"]["outbox"])
    assert body["checks"]["database"] == "ok"
    # and once a dispatcher has sent it, ready again
    await api.deliver()
    assert (await api.client.get("/readyz")).status_code == 200


@pytest.mark.parametrize(
    "settings_overrides",
    [{"redis_url": f"redis://127.0.0.1:{free_port()}/12", "redis_timeout_seconds": 0.2}],
)
async def test_readyz_reports_an_unreachable_redis(api: Api) -> None:
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "unreachable"
    # liveness does not depend on Redis
    assert (await api.client.get("/healthz")).status_code == 200


async def test_metrics_count_operations_outcomes_deliveries_and_the_outbox(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    before = (await api.client.get("/metrics")).text
    assert 'portal_outbox_pending{kind="invitation"} 1.0' in before
    await login(api, "nobody", "wrong-password-123")
    await api.deliver()

    text = (await api.client.get("/metrics")).text

    def value(line_start: str) -> float:
        found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
        assert found, line_start
        return float(found[0].rsplit(" ", 1)[1])

    assert value('portal_graphql_requests_total{operation="login",outcome="user_error"}') >= 1
    assert value('portal_graphql_requests_total{operation="sendInvitation",outcome="ok"}') >= 1
    assert value('portal_graphql_request_seconds_count{operation="login"}') >= 1
    assert value('portal_mail_deliveries_total{outcome="delivered"}') >= 1
    assert value('portal_outbox_pending{kind="invitation"}') == 0
    assert "portal_password_hash_queue" in text
    assert "portal_rate_limit_refusals_total" in text


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": ["203.0.113.7/32"]}])
async def test_x_request_id_from_a_trusted_proxy_is_kept(api: Api) -> None:
    kept = await api.client.get("/healthz", headers={"X-Request-Id": "edge-4f2a.91"})
    assert kept.headers["x-request-id"] == "edge-4f2a.91"
    # a malformed one (spaces, newlines, too long) is replaced by our own
    bad = await api.client.get("/healthz", headers={"X-Request-Id": "x" * 200})
    assert bad.headers["x-request-id"] != "x" * 200 and len(bad.headers["x-request-id"]) == 32


async def test_x_request_id_from_anyone_else_is_replaced(api: Api) -> None:
    response = await api.client.get("/healthz", headers={"X-Request-Id": "spoofed-id"})
    assert response.headers["x-request-id"] != "spoofed-id"


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (RuntimeError("boom"), 500, "INTERNAL_SERVER_ERROR"),
        (ConnectionRefusedError("database gone"), 503, "SERVICE_UNAVAILABLE"),
    ],
)
async def test_every_5xx_body_is_graphql_shaped_json(
    api: Api,
    staff: Staff,
    monkeypatch: pytest.MonkeyPatch,
    fault: Exception,
    status: int,
    code: str,
) -> None:
    """Why 5: a database dropped under the API answered staff calls with HTTP 500 and a
    plain-text body."""

    async def broken(*_: Any) -> Any:
        raise fault

    monkeypatch.setattr("graph.app.authenticate", broken)
    response = await api.client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"Authorization": f"Bearer {staff.token}"},
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["errors"][0]["extensions"] == {
        "code": code,
        "requestId": response.headers["x-request-id"],
    }
    assert "boom" not in response.text and "database gone" not in response.text


async def test_pending_count_ignores_sent_mail(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    pid = await enabled_patient(api, staff.token)
    await invite(api, staff.token, pid)
    await api.deliver()
    assert await OutboxMessage.filter(status=OutboxStatus.PENDING).count() == 0
    text = (await api.client.get("/metrics")).text
    assert 'portal_outbox_pending{kind="invitation"} 0.0' in text
