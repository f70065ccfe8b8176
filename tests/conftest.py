"""Shared fixtures: a real database, a real SMTP server (aiosmtpd) and the real ASGI app
driven over HTTP with httpx, all in one event loop.

The database is SQLite, or PostgreSQL when PORTAL_TEST_POSTGRES_URL is set. One pytest
process tests one backend (Tortoise caches per-dialect SQL on the model classes, so a
process cannot switch); ``make test`` and ``.ci/run`` run the suite once per backend."""

from __future__ import annotations

import email
import logging
import os
import re
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from tortoise import Tortoise, connections

from core.settings import Settings
from graph.app import create_app
from models import search_index
from models.database import connect, disconnect, migrate
from onboarding.admin import create_practice, create_staff
from tests import twilio_fake
from tests.twilio_fake import Running, TwilioFake

POSTGRES_URL = os.environ.get("PORTAL_TEST_POSTGRES_URL")
TABLES = [
    "webhook_attempt",
    "webhook_delivery",
    "webhook_endpoint",
    "portal_event",
    "idempotency_key",
    "audit_event",
    "outbox_message",
    "patient_session",
    "portal_account",
    "link_token",
    "patient",
    "staff_user",
    "practice",
]


BACKEND = "postgres" if POSTGRES_URL else "sqlite"


def pytest_report_header() -> str:
    return f"portal test database: {BACKEND}"


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[str]:
    """One schema for the whole session, emptied before each test."""
    if BACKEND == "postgres":
        url = POSTGRES_URL
        assert url
        await connect(url)
        conn = connections.get("default")
        await conn.execute_script("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        await disconnect()
    else:
        tmp = tempfile.mkdtemp(prefix="portal-test-")
        url = f"sqlite://{tmp}/test.sqlite3"
    await migrate(url)
    await connect(url)
    yield BACKEND
    await disconnect()


@pytest.fixture(autouse=True)
async def clean_database(database: str) -> None:
    conn = connections.get("default")
    if database == "postgres":
        await conn.execute_script(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    else:
        await conn.execute_script(
            "".join(f"DELETE FROM {t};" for t in TABLES) + "DELETE FROM sqlite_sequence;"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mailbox:
    """What the in-process SMTP server received; ``refuse`` maps an address to the
    reply its RCPT gets (e.g. "550 5.1.1 no such user" or "451 4.3.0 try later")."""

    messages: list[Message] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"].lower() == address.lower()]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()


def body_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode()
    raise AssertionError("no text part")


TOKEN_RE = re.compile(r"#token=([A-Za-z0-9_\-]+)")


def token_from(message: Message) -> str:
    match = TOKEN_RE.search(body_text(message))
    assert match, "no link in the message"
    return match.group(1)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    # The test SMTP server (aiosmtpd) logs every envelope at INFO: it is not the service,
    # and its lines would pollute the tests that read the service's logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Mailbox:
    box, _ = smtp_server
    box.clear()
    box.refuse.clear()
    box.connections = 0
    return box


def make_settings(database: str, smtp_port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "database_url": "sqlite://unused",  # the test owns the connection
        "mail_backend": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "mail_from": "Clinic Portal <portal@clinic.test>",
        "mail_dispatch_in_server": False,
        "link_base_url": "https://portal.clinic.test/activate",
        "sms_dir": tempfile.mkdtemp(prefix="portal-sms-"),
        "redis_url": None,
        "trusted_proxies": [],
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Api:
    """The real app over HTTP, plus the handles tests need to drive it."""

    client: httpx.AsyncClient
    app: Any
    settings: Settings

    @property
    def services(self):  # type: ignore[no-untyped-def]
        return self.app.state.services

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        **headers: str,
    ) -> dict[str, Any]:
        hdrs = dict(headers)
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=hdrs
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def deliver(self) -> None:
        """Let post-response work finish, then run the real dispatcher over SMTP."""
        await self.services.background.drain()
        await self.services.dispatcher.drain()


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[TwilioFake]:
    fake = TwilioFake(free_port())
    with Running(fake):
        yield fake


@pytest.fixture
def twilio(twilio_server: TwilioFake) -> TwilioFake:
    twilio_server.clear()
    return twilio_server


def twilio_settings(fake: TwilioFake) -> dict[str, Any]:
    """Settings overrides that send texts to the local Twilio stand-in."""
    return {
        "sms_backend": "twilio",
        "twilio_account_sid": twilio_fake.ACCOUNT_SID,
        "twilio_auth_token": twilio_fake.AUTH_TOKEN,
        "twilio_from": twilio_fake.FROM,
        "twilio_api_base": fake.base,
    }


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def api(
    database: str, smtp_server: tuple[Mailbox, int], settings_overrides: dict[str, Any]
) -> AsyncIterator[Api]:
    settings = make_settings(database, smtp_server[1], **settings_overrides)
    app = create_app(settings, manage_database=False)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
        yield Api(client, app, settings)
    await app.state.services.background.drain()
    await search_index.drain()
    app.state.services.hasher.close()
    app.state.services.limiter.close()


@dataclass
class Staff:
    practice_id: int
    staff_id: int
    token: str


@pytest.fixture
async def staff() -> Staff:
    practice = await create_practice("Maple Street Clinic")
    user, token = await create_staff(practice.id, "Dana Front Desk")
    return Staff(practice.id, user.id, token)


@pytest.fixture
async def other_staff() -> Staff:
    practice = await create_practice("Harbor View Medical")
    user, token = await create_staff(practice.id, "Eli Other Practice")
    return Staff(practice.id, user.id, token)


__all__ = ["Api", "Mailbox", "Staff", "body_text", "token_from", "Tortoise", "Path"]
