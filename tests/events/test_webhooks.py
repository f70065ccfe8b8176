"""Webhooks (SPEC 8.8): a real receiver on loopback, the real delivery loop, signatures
checked with the official `standardwebhooks` package."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from tortoise import connections

from core.clock import utcnow
from models import PortalEvent, WebhookDelivery
from onboarding.webhook_worker import WebhookWorker
from tests.conftest import POSTGRES_URL, Api, Mailbox, Staff
from tests.events.receiver import Receiver, running_receiver
from tests.events.scenario import EXPECTED, scripted_onboarding
from tests.helpers import SEND, enabled_patient

ROOT = Path(__file__).resolve().parents[2]

CREATE = """
mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    endpoint { id url eventTypes enabled } secret userErrors { field code message }
  }
}"""

ENDPOINTS = "{ webhookEndpoints { id url enabled disabledReason previousSecretValidUntil } }"

DELIVERIES = """
query($id: ID!) {
  webhookDeliveries(endpointId: $id, first: 100) {
    edges { node { eventId eventType status sequence
      attempts { statusCode latencyMs responseExcerpt error } } }
  }
}"""

ROTATE = """
mutation($id: ID!) {
  rotateWebhookSecret(input: {id: $id}) {
    endpoint { previousSecretValidUntil } secret userErrors { code }
  }
}"""

SET_ENABLED = """
mutation($id: ID!) {
  disableWebhookEndpoint(input: {id: $id}) { endpoint { enabled disabledReason } userErrors { code } }
}"""

ENABLE_ENDPOINT = """
mutation($id: ID!) {
  enableWebhookEndpoint(input: {id: $id}) { endpoint { enabled disabledReason } userErrors { code } }
}"""

DELETE = """
mutation($id: ID!) {
  deleteWebhookEndpoint(input: {id: $id}) { deleted userErrors { code } }
}"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "rate_limit_login": "1000/minute",
        "redeem_dob": "never",
        "webhook_allow_private": True,
        "webhook_retry_base_seconds": 0.01,
        "webhook_timeout_seconds": 5,
    }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


async def register(api: Api, token: str, url: str, types: list[str] | None = None) -> tuple[str, str]:
    result = await api.gql(CREATE, {"input": {"url": url, "eventTypes": types or []}}, token)
    payload = result["data"]["createWebhookEndpoint"]
    assert payload["userErrors"] == [], payload
    return payload["endpoint"]["id"], payload["secret"]


async def deliver_all(worker: WebhookWorker, receiver: Receiver, count: int) -> None:
    """Run the real loop until ``count`` messages were accepted (retries back off a few
    milliseconds in these tests), with a generous bound."""
    deadline = time.monotonic() + 30
    while len(receiver.delivered()) < count and time.monotonic() < deadline:
        if not await worker.run_once():
            await asyncio.sleep(0.02)
    await worker.drain()


def verified(secret: str, message: Any) -> dict[str, Any]:
    return Webhook(secret).verify(message.body, message.headers)


async def test_a_receiver_gets_every_event_of_the_onboarding_in_order_signed(
    api: Api, staff: Staff, mailbox: Mailbox, receiver: Receiver
) -> None:
    # given an endpoint for every event type
    _, secret = await register(api, staff.token, receiver.url)
    assert secret.startswith("whsec_")
    # when the patient goes through the whole story and the worker runs
    pid = await scripted_onboarding(api, staff.token, mailbox)
    worker = WebhookWorker(api.settings)
    await deliver_all(worker, receiver, len(EXPECTED))
    await worker.close()
    # then the receiver got each event once, in order, each verified by the official library
    messages = receiver.delivered()
    assert len(messages) == len(EXPECTED)
    bodies = [verified(secret, m) for m in messages]
    assert [(b["type"], b["data"]["portalStatus"]) for b in bodies] == EXPECTED
    assert [b["data"]["sequence"] for b in bodies] == list(range(1, len(EXPECTED) + 1))
    assert {b["data"]["patientId"] for b in bodies} == {pid}
    assert {b["data"]["practiceId"] for b in bodies} == {str(staff.practice_id)}
    assert len({m.headers["webhook-id"] for m in messages}) == len(EXPECTED)
    # and no message carries an address, a token or a password
    raw = b"".join(m.body for m in messages).decode()
    assert "@" not in raw and "token" not in raw.lower() and "password\"" not in raw


async def test_a_tampered_message_fails_verification(
    api: Api, staff: Staff, receiver: Receiver
) -> None:
    # given a delivered event
    _, secret = await register(api, staff.token, receiver.url)
    await enabled_patient(api, staff.token)
    worker = WebhookWorker(api.settings)
    await deliver_all(worker, receiver, 1)
    await worker.close()
    message = receiver.delivered()[0]
    # then the library refuses it with another secret or another body
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook("whsec_" + "A" * 43 + "=").verify(message.body, message.headers)
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook(secret).verify(message.body.replace(b"NOT_INVITED", b"ACTIVE"), message.headers)


async def test_a_receiver_that_fails_then_recovers_gets_everything_in_order(
    api: Api, staff: Staff, receiver: Receiver
) -> None:
    # given an endpoint that answers 503 to its first five requests
    endpoint_id, secret = await register(api, staff.token, receiver.url)
    receiver.fail_next = 5
    # and three patients with two events each (enabled, invited)
    ids = [await enabled_patient(api, staff.token, n=n) for n in (1, 2, 3)]
    await api.gql(SEND, {"ids": ids}, staff.token)
    # when the worker keeps running
    worker = WebhookWorker(api.settings)
    await deliver_all(worker, receiver, 6)
    await worker.close()
    # then every event arrived exactly once among the accepted requests, in each patient's order
    accepted = [verified(secret, m) for m in receiver.delivered()]
    assert len(accepted) == 6
    assert len({m.headers["webhook-id"] for m in receiver.delivered()}) == 6
    for pid in ids:
        mine = [b["type"] for b in accepted if b["data"]["patientId"] == pid]
        assert mine == ["portal.enabled", "invitation.sent"]
    # and the failures are on record, reply included
    result = await api.gql(DELIVERIES, {"id": endpoint_id}, staff.token)
    nodes = [e["node"] for e in result["data"]["webhookDeliveries"]["edges"]]
    assert {n["status"] for n in nodes} == {"delivered"}
    attempts = [a for n in nodes for a in n["attempts"]]
    assert sum(a["statusCode"] == 503 for a in attempts) == 5
    assert all(a["responseExcerpt"] == "receiver is down for maintenance"
               for a in attempts if a["statusCode"] == 503)
    assert sum(a["statusCode"] == 204 for a in attempts) == 6
    assert all(a["latencyMs"] >= 0 for a in attempts)


async def test_a_delivery_failing_past_the_retry_window_disables_the_endpoint_visibly(
    api: Api, staff: Staff, receiver: Receiver
) -> None:
    # given an endpoint whose receiver has failed for more than the retry window
    endpoint_id, secret = await register(api, staff.token, receiver.url)
    await enabled_patient(api, staff.token)
    await WebhookDelivery.all().update(created_at=utcnow() - timedelta(hours=25))
    receiver.fail_next = 1
    # when the next attempt fails too
    worker = WebhookWorker(api.settings)
    await worker.drain()
    # then the endpoint is disabled, and staff can read why
    endpoints = (await api.gql(ENDPOINTS, token=staff.token))["data"]["webhookEndpoints"]
    assert endpoints[0]["enabled"] is False
    assert "failed for 24 hours" in endpoints[0]["disabledReason"]
    assert "HTTP 503" in endpoints[0]["disabledReason"]
    # and nothing is sent while it is disabled; the event is kept
    await WebhookDelivery.all().update(next_attempt_at=utcnow())
    assert await worker.drain() == 0
    # when staff enable it again, the kept event is delivered
    result = await api.gql(ENABLE_ENDPOINT, {"id": endpoint_id}, staff.token)
    assert result["data"]["enableWebhookEndpoint"]["endpoint"]["disabledReason"] is None
    await deliver_all(worker, receiver, 1)
    await worker.close()
    assert verified(secret, receiver.delivered()[0])["type"] == "portal.enabled"


async def test_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    from onboarding.webhook_worker import backoff

    # given the production base of 30 s
    delays = [backoff(n, 30.0).total_seconds() for n in range(1, 40)]
    # then each delay is within half to all of base * 2^(n-1), capped at an hour
    for n, delay in enumerate(delays, start=1):
        ceiling = min(30.0 * 2 ** (n - 1), 3600.0)
        assert ceiling / 2 <= delay <= ceiling
    # and the jitter really varies (retries of many deliveries do not line up)
    assert len({backoff(5, 30.0) for _ in range(20)}) > 1


async def test_rotation_keeps_the_old_secret_valid_for_a_while(
    api: Api, staff: Staff, receiver: Receiver
) -> None:
    # given an endpoint whose secret was rotated
    endpoint_id, old = await register(api, staff.token, receiver.url)
    result = await api.gql(ROTATE, {"id": endpoint_id}, staff.token)
    payload = result["data"]["rotateWebhookSecret"]
    new = payload["secret"]
    assert new != old and payload["endpoint"]["previousSecretValidUntil"]
    # when an event is delivered
    await enabled_patient(api, staff.token)
    worker = WebhookWorker(api.settings)
    await deliver_all(worker, receiver, 1)
    await worker.close()
    # then receivers holding either secret verify it
    message = receiver.delivered()[0]
    assert verified(new, message)["type"] == verified(old, message)["type"] == "portal.enabled"
    # and the secret is never readable again
    listed = await api.gql("{ webhookEndpoints { id url } }", token=staff.token)
    assert new not in str(listed) and old not in str(listed)


async def test_endpoints_are_the_practice_own(
    api: Api, staff: Staff, other_staff: Staff, receiver: Receiver
) -> None:
    # given an endpoint of this practice
    endpoint_id, _ = await register(api, staff.token, receiver.url)
    # then another practice neither sees, disables, rotates nor deletes it
    assert (await api.gql(ENDPOINTS, token=other_staff.token))["data"]["webhookEndpoints"] == []
    for doc, name in ((SET_ENABLED, "disableWebhookEndpoint"), (ROTATE, "rotateWebhookSecret"),
                      (DELETE, "deleteWebhookEndpoint")):
        result = await api.gql(doc, {"id": endpoint_id}, other_staff.token)
        assert result["data"][name]["userErrors"] == [{"code": "NOT_FOUND"}]
    none = await api.gql(DELIVERIES, {"id": endpoint_id}, other_staff.token)
    assert none["data"]["webhookDeliveries"]["edges"] == []
    # and the other practice's changes are not delivered to it
    await enabled_patient(api, other_staff.token)
    assert await WebhookDelivery.all().count() == 0
    # while an anonymous caller is refused outright
    anonymous = await api.gql(ENDPOINTS)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


WEBHOOK_NODES = """
query($ids: [ID!]!) {
  nodes(ids: $ids) {
    __typename id
    ... on WebhookEndpoint { url }
    ... on WebhookDelivery { eventType patientId attempts { statusCode } }
    ... on Practice { displayName }
  }
}"""


async def test_endpoints_deliveries_and_the_practice_are_relay_nodes(
    api: Api, staff: Staff, other_staff: Staff, receiver: Receiver
) -> None:
    """SPEC 8.2: every object with an identity, webhook endpoints included, is a Node
    with a global id; node() reads only the staff user's own practice."""
    # given an endpoint, one delivered event and the practice's profile
    endpoint_id, _ = await register(api, staff.token, receiver.url)
    pid = await enabled_patient(api, staff.token)
    worker = WebhookWorker(api.settings)
    await deliver_all(worker, receiver, 1)
    await worker.close()
    deliveries = await api.gql(
        "query($id: ID!) { webhookDeliveries(endpointId: $id) { edges { node { id } } } }",
        {"id": endpoint_id},
        staff.token,
    )
    delivery_id = deliveries["data"]["webhookDeliveries"]["edges"][-1]["node"]["id"]
    practice = await api.gql("{ practice { id displayName } }", token=staff.token)
    practice_id = practice["data"]["practice"]["id"]

    # then each id is global (type-tagged, opaque) and node() finds each object
    import base64

    assert base64.b64decode(endpoint_id).decode().startswith("WebhookEndpoint:")
    result = await api.gql(
        WEBHOOK_NODES, {"ids": [endpoint_id, delivery_id, practice_id]}, staff.token
    )
    endpoint, delivery, profile = result["data"]["nodes"]
    assert endpoint == {"__typename": "WebhookEndpoint", "id": endpoint_id, "url": receiver.url}
    assert delivery["__typename"] == "WebhookDelivery" and delivery["id"] == delivery_id
    assert delivery["patientId"] == pid  # the patient's global id, as everywhere else
    assert delivery["attempts"] == [{"statusCode": 204}]
    assert profile == {
        "__typename": "Practice",
        "id": practice_id,
        "displayName": practice["data"]["practice"]["displayName"],
    }
    # and another practice reads none of them
    other = await api.gql(
        WEBHOOK_NODES, {"ids": [endpoint_id, delivery_id, practice_id]}, other_staff.token
    )
    assert other["data"]["nodes"] == [None, None, None]

    # and mutations take the global id, a deprecated decimal id, but no other type's id
    legacy = str(int(base64.b64decode(endpoint_id).decode().partition(":")[2]))
    disabled = await api.gql(SET_ENABLED, {"id": legacy}, staff.token)
    assert disabled["data"]["disableWebhookEndpoint"]["userErrors"] == []
    wrong_type = await api.gql(ENABLE_ENDPOINT, {"id": pid}, staff.token)
    assert wrong_type["data"]["enableWebhookEndpoint"]["userErrors"] == [{"code": "NOT_FOUND"}]
    enabled = await api.gql(ENABLE_ENDPOINT, {"id": endpoint_id}, staff.token)
    assert enabled["data"]["enableWebhookEndpoint"]["endpoint"]["enabled"] is True


async def test_event_type_filter_and_bad_input(api: Api, staff: Staff, receiver: Receiver) -> None:
    # given an endpoint for invitations only
    await register(api, staff.token, receiver.url, ["invitation.sent"])
    pid = await enabled_patient(api, staff.token)
    await api.gql(SEND, {"ids": [pid]}, staff.token)
    # then only those are queued
    assert await WebhookDelivery.all().count() == 1
    assert await PortalEvent.all().count() == 2
    # and unknown types or a bad URL are clear user errors
    bad = await api.gql(CREATE, {"input": {"url": receiver.url, "eventTypes": ["nope"]}},
                        staff.token)
    assert bad["data"]["createWebhookEndpoint"]["userErrors"][0]["field"] == ["eventTypes"]
    bad = await api.gql(CREATE, {"input": {"url": "ftp://x"}}, staff.token)
    assert bad["data"]["createWebhookEndpoint"]["userErrors"][0]["code"] == "URL_NOT_ALLOWED"


class TestProduction:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"env": "production", "allow_insecure_defaults": True}

    @pytest.mark.parametrize(
        "url",
        [
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://10.1.2.3/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[::ffff:192.168.0.1]/hook",
            "http://93.184.215.14/hook",
        ],
    )
    async def test_private_loopback_link_local_or_plain_http_is_refused(
        self, api: Api, staff: Staff, url: str
    ) -> None:
        result = await api.gql(CREATE, {"input": {"url": url}}, staff.token)
        payload = result["data"]["createWebhookEndpoint"]
        assert payload["endpoint"] is None and payload["secret"] is None
        assert payload["userErrors"][0]["code"] == "URL_NOT_ALLOWED"

    async def test_a_name_that_later_resolves_privately_is_refused_at_delivery(
        self, api: Api, staff: Staff, receiver: Receiver
    ) -> None:
        # given an endpoint stored while its name was public, now pointing at loopback
        from models import WebhookEndpoint

        endpoint = await WebhookEndpoint.create(
            practice_id=staff.practice_id, url=receiver.url.replace("http:", "https:"),
            event_types=[], secret="whsec_" + "A" * 43 + "=", created_at=utcnow(),
        )
        await enabled_patient(api, staff.token)
        # when the worker runs in production mode
        worker = WebhookWorker(api.settings)
        await worker.run_once()
        await worker.close()
        # then nothing was sent, and the attempt says why
        assert receiver.received == []
        result = await api.gql(DELIVERIES, {"id": str(endpoint.id)}, staff.token)
        attempt = result["data"]["webhookDeliveries"]["edges"][0]["node"]["attempts"][0]
        assert attempt["statusCode"] is None and "refused" in attempt["error"]


async def test_killing_a_worker_mid_delivery_loses_nothing(
    api: Api,
    staff: Staff,
    receiver: Receiver,
    smtp_server: tuple[Mailbox, int],
    tmp_path: Path,
) -> None:
    # given three patients' events waiting for an endpoint
    _, secret = await register(api, staff.token, receiver.url)
    ids = [await enabled_patient(api, staff.token, n=n) for n in (1, 2, 3)]
    await api.gql(SEND, {"ids": ids}, staff.token)
    # and a receiver that holds the first request without answering
    import threading

    receiver.hold = threading.Event()
    # when a `portal mail-worker` process takes a delivery and is killed mid-request
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    conn = connections.get("default")
    env.update(
        PORTAL_DATABASE_URL=POSTGRES_URL or f"sqlite://{conn.filename}",  # type: ignore[attr-defined]
        PORTAL_MAIL_BACKEND="smtp",
        PORTAL_SMTP_HOST="127.0.0.1",
        PORTAL_SMTP_PORT=str(smtp_server[1]),
        PORTAL_WEBHOOK_ALLOW_PRIVATE="true",
        PORTAL_WEBHOOK_LEASE_SECONDS="4",
        PORTAL_WEBHOOK_CONCURRENCY="1",
        PORTAL_LINK_BASE_URL="https://portal.clinic.test/activate",
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import portal_cli; portal_cli.main()", "mail-worker",
            cwd=ROOT, env=env, stdout=out, stderr=out,
        )
        try:
            held = await asyncio.to_thread(receiver.holding.wait, 60)
            assert held, "the worker never called the receiver: " + log.read_text()[-2000:]
            process.send_signal(signal.SIGKILL)
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), 10)
    receiver.release.set()
    # then its claimed rows are leased: another worker cannot take them yet
    worker = WebhookWorker(api.settings)
    assert await worker.run_once() == 0
    assert receiver.delivered() == []
    # and once the lease has run out, that worker delivers every event
    await asyncio.sleep(4.2)
    await deliver_all(worker, receiver, 6)
    await worker.close()
    bodies = [verified(secret, m) for m in receiver.delivered()]
    assert len(bodies) == 6
    for pid in ids:
        mine = [b["type"] for b in bodies if b["data"]["patientId"] == pid]
        assert mine == ["portal.enabled", "invitation.sent"]
    assert await WebhookDelivery.filter(status="pending").count() == 0
