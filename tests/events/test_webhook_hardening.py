"""Webhooks against hostile receivers and URLs (review of stop 29): one slow receiver
cannot hold the worker, events wait while an endpoint is disabled, the endpoint cap
holds under concurrent requests, and URLs the HTTP client would read differently from
the SSRF check are refused. Real sockets and the real worker, as in test_webhooks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.clock import utcnow
from core.settings import Settings
from models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from models.webhook import PARKED
from onboarding.webhook_worker import WebhookWorker
from onboarding.webhooks import MAX_ENDPOINTS_PER_PRACTICE, _public, checked_transport, url_problem
from tests.conftest import Api, Staff
from tests.events.receiver import Receiver, running_receiver
from tests.events.test_webhooks import (
    CREATE,
    ENABLE_ENDPOINT,
    SET_ENABLED,
    deliver_all,
    register,
    verified,
)
from tests.helpers import enabled_patient


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "webhook_allow_private": True,
        "webhook_retry_base_seconds": 0.01,
        "webhook_timeout_seconds": 1,
    }


WAITING = """
query($id: ID!) {
  webhookDeliveries(endpointId: $id, first: 10) { edges { node { status nextAttemptAt } } }
}"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@contextmanager
def dripping_receiver(seconds: float) -> Iterator[str]:
    """Answers one byte of header every 0.3 s for ``seconds``: each read is within any
    read timeout, the whole answer is not."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    time.sleep(0.3)
                    conn.sendall(b"a")
        except OSError:
            pass  # the worker hung up, as it should

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        listener.close()


async def test_a_receiver_that_drips_its_answer_is_cut_at_the_deadline(
    api: Api, staff: Staff, other_staff: Staff, receiver: Receiver
) -> None:
    # given one practice's receiver that would take 20 s to answer, another's healthy
    with dripping_receiver(20) as slow_url:
        await register(api, staff.token, slow_url)
        await register(api, other_staff.token, receiver.url)
        await enabled_patient(api, staff.token)
        await enabled_patient(api, other_staff.token)
        worker = WebhookWorker(api.settings)
        # when the worker sends both (one batch)
        started = time.monotonic()
        assert await asyncio.wait_for(worker.run_once(), 10) == 2
        took = time.monotonic() - started
        await worker.close()
    # then the batch ended at the 1 s deadline, not after the drip, and both were settled
    assert took < 5, took
    assert len(receiver.delivered()) == 1
    slow = await WebhookAttempt.filter(status_code=None).get()
    assert slow.error == "no whole answer within 1 s"
    assert 900 <= slow.latency_ms < 5000
    pending = await WebhookDelivery.filter(status="pending").get()
    assert pending.attempts == 1 and pending.lease_until is None


async def test_events_while_an_endpoint_is_disabled_wait_for_it(
    api: Api, staff: Staff, receiver: Receiver
) -> None:
    endpoint_id, secret = await register(api, staff.token, receiver.url)
    await api.gql(SET_ENABLED, {"id": endpoint_id}, staff.token)
    # an event while the endpoint is disabled is kept, and not sent
    await enabled_patient(api, staff.token)
    worker = WebhookWorker(api.settings)
    assert await worker.drain() == 0
    assert receiver.received == []
    # parked (no claim walks it again), and shown to staff as not due
    assert (await WebhookDelivery.get()).next_attempt_at == PARKED
    listed = await api.gql(WAITING, {"id": endpoint_id}, staff.token)
    [edge] = listed["data"]["webhookDeliveries"]["edges"]
    assert (edge["node"]["status"], edge["node"]["nextAttemptAt"]) == ("pending", None)
    # and goes out when staff enable the endpoint again
    result = await api.gql(ENABLE_ENDPOINT, {"id": endpoint_id}, staff.token)
    assert result["data"]["enableWebhookEndpoint"]["endpoint"]["enabled"] is True
    await deliver_all(worker, receiver, 1)
    await worker.close()
    assert verified(secret, receiver.delivered()[0])["type"] == "portal.enabled"


async def test_events_kept_for_a_day_off_do_not_disable_the_endpoint_at_once(
    api: Api, staff: Staff, receiver: Receiver
) -> None:
    # given an endpoint staff turned off for more than the 24 h failure window
    endpoint_id, _ = await register(api, staff.token, receiver.url)
    await api.gql(SET_ENABLED, {"id": endpoint_id}, staff.token)
    await enabled_patient(api, staff.token)
    await WebhookDelivery.all().update(created_at=utcnow() - timedelta(hours=25))
    # when it is enabled again and its receiver fails once
    await api.gql(ENABLE_ENDPOINT, {"id": endpoint_id}, staff.token)
    receiver.fail_next = 1
    worker = WebhookWorker(api.settings)
    assert await worker.run_once() == 1
    # then it stays enabled (one failure is no day of failures), and the event goes out
    endpoint = await WebhookEndpoint.get()
    assert (endpoint.enabled, endpoint.disabled_reason) == (True, None)
    await deliver_all(worker, receiver, 1)
    await worker.close()
    assert (await WebhookDelivery.get()).status == "delivered"


async def test_concurrent_registrations_stop_at_the_cap(api: Api, staff: Staff) -> None:
    async def create(i: int) -> dict[str, Any]:
        answer = await api.gql(
            CREATE, {"input": {"url": f"http://127.0.0.1:9/{i}", "eventTypes": []}}, staff.token
        )
        return answer["data"]["createWebhookEndpoint"]

    answers = await asyncio.gather(*(create(i) for i in range(MAX_ENDPOINTS_PER_PRACTICE + 10)))
    made = [a for a in answers if a["userErrors"] == []]
    assert len(made) == MAX_ENDPOINTS_PER_PRACTICE
    assert await WebhookEndpoint.filter(practice_id=staff.practice_id).count() == len(made)
    refused = {e["code"] for a in answers for e in a["userErrors"]}
    assert refused == {"INVALID_INPUT"}


async def test_a_stored_url_the_client_refuses_is_a_failed_attempt(
    api: Api, staff: Staff
) -> None:
    # an endpoint stored before URLs with control characters were refused at creation
    endpoint_id, _ = await register(api, staff.token, "http://127.0.0.1:9/hook")
    await WebhookEndpoint.all().update(url="http://127.0.0.1:9/in\tbox")
    await enabled_patient(api, staff.token)
    worker = WebhookWorker(api.settings)
    assert await worker.run_once() == 1
    await worker.close()
    delivery = await WebhookDelivery.get()
    assert (delivery.status, delivery.attempts, delivery.lease_until) == ("pending", 1, None)
    attempt = await WebhookAttempt.get()
    assert attempt.error is not None and "control characters" in attempt.error


STRICT = Settings(_env_file=None, webhook_allow_private=False)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://hook.example/in\tbox", "control characters"),
        ("https://hook.example/\nbox", "control characters"),
        ("https://hook.example/a b", "spaces"),
        ("https://ß.example/", "ASCII"),
        ("https://a..b.example/", "does not resolve"),
        ("https://" + "a" * 64 + ".example/", "does not resolve"),
    ],
)
async def test_urls_the_client_would_read_otherwise_are_refused(url: str, why: str) -> None:
    problem = await url_problem(url, STRICT)
    assert problem is not None and why in problem, problem


async def test_an_unusable_host_is_a_user_error_not_a_crash(api: Api, staff: Staff) -> None:
    api.settings.webhook_allow_private = False
    answer = await api.gql(
        CREATE, {"input": {"url": "https://a..b.example/", "eventTypes": []}}, staff.token
    )
    assert "errors" not in answer, answer
    codes = [e["code"] for e in answer["data"]["createWebhookEndpoint"]["userErrors"]]
    assert codes == ["URL_NOT_ALLOWED"]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("fec0::1", False),  # site-local
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 (RFC 8215)
        ("::ffff:0:a00:1", False),  # IPv4-translated 10.0.0.1
        ("::ffff:0:808:808", True),  # IPv4-translated 8.8.8.8
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo: 192.0.2.45 inside
        ("2001:4860:4860::8888", True),
        ("fd00::1", False),
    ],
)
def test_ipv6_forms_are_judged_by_the_address_they_reach(address: str, public: bool) -> None:
    assert _public(address) is public


@contextmanager
def counting_listener() -> Iterator[tuple[int, list[int]]]:
    """A loopback TCP listener that counts the connections it accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(2)
        listener.close()


async def test_the_address_is_checked_again_when_connecting() -> None:
    """The check before a delivery and the connection resolve the name separately; a
    name that re-resolves to a private address in between (DNS rebinding) must get no
    connection. ``localhost`` stands for such a name: it reaches the connection here
    without the earlier check, and the real resolver answers 127.0.0.1."""
    with counting_listener() as (port, accepted):
        async with httpx.AsyncClient(transport=checked_transport(STRICT)) as client:
            with pytest.raises(httpx.ConnectError, match="private, loopback"):
                await client.post(f"https://localhost:{port}/hook", content=b"{}")
        await asyncio.sleep(0.3)
        assert accepted == []
        # the same transport with private addresses allowed (tests) does connect
        allowed = Settings(_env_file=None, webhook_allow_private=True)  # type: ignore[call-arg]
        async with httpx.AsyncClient(transport=checked_transport(allowed)) as client:
            with pytest.raises(httpx.HTTPError):
                await client.post(f"http://localhost:{port}/hook", content=b"{}")
        await asyncio.sleep(0.3)
        assert accepted == [1]


async def test_a_delivery_to_a_name_now_private_is_refused_when_connecting(
    api: Api, staff: Staff
) -> None:
    # given an endpoint whose name resolves to a private address since its registration
    # (localhost stands for it: its address is loopback by the real resolver)
    await register(api, staff.token, "http://127.0.0.1:9/hook")
    await enabled_patient(api, staff.token)
    with counting_listener() as (port, accepted):
        await WebhookEndpoint.all().update(url=f"https://localhost:{port}/hook")
        api.settings.webhook_allow_private = False
        worker = WebhookWorker(api.settings)
        # when the worker delivers
        assert await worker.run_once() == 1
        await worker.close()
        await asyncio.sleep(0.3)
        # then no connection was made, and the attempt says why
        assert accepted == []
    attempt = await WebhookAttempt.get()
    assert attempt.error is not None and "private, loopback" in attempt.error
    assert (await WebhookDelivery.get()).status == "pending"
