"""Issue 10 item 4, SECURITY TOK-2: no usable link in the database, ever.

Link tokens are HMAC(link key, nonce) with the link key derived from PORTAL_SECRET_KEY
(``core.link_keys``); the database holds the nonce (while the message waits) and the
token's digest. These tests collect every token the service derives, then look for each
in the raw SQLite file and its WAL, or in every row of every PostgreSQL table, with mail
queued and after it was sent (email and text), and check rotation and a wrong key."""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise import connections

from core import link_keys
from core.clock import utcnow
from core.link_keys import LinkKeys, NewLink
from core.secrets import digest
from graph.app import create_app
from mail.dispatcher import Dispatcher
from models import DeliveryStatus, LinkToken, OutboxMessage, OutboxStatus, RevokeReason
from onboarding.delivery import record_delivery_outcome
from tests.conftest import Api, Mailbox, Staff, make_settings, token_from, twilio_settings
from tests.helpers import create_patient, enabled_patient, invite
from tests.security.support import SELF_RESET, TOKEN_INFO, identity, redeem
from tests.twilio_fake import TwilioFake

KEY_A = "a" * 20 + "first-secret-key-for-links"
KEY_B = "b" * 20 + "second-secret-key-for-links"
KEY_WRONG = "w" * 20 + "a-key-this-service-never-had"
MOBILE = "+16175550123"


@pytest.fixture
def settings_overrides(twilio: TwilioFake) -> dict[str, Any]:
    return {**twilio_settings(twilio), "secret_key": KEY_A}


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> list[NewLink]:
    """Every link the service issues in this test, raw token included (memory only)."""
    seen: list[NewLink] = []
    real = link_keys.LinkKeys.issue

    def spy(self: LinkKeys) -> NewLink:
        new = real(self)
        seen.append(new)
        return new

    monkeypatch.setattr(link_keys.LinkKeys, "issue", spy)
    return seen


def forms(token: str) -> list[bytes]:
    """The ways a token could sit in storage: as text, a prefix, its raw 32 bytes and
    their hex."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return [token.encode(), token[:20].encode(), raw, raw.hex().encode()]


def sqlite_files(path: Path) -> bytes:
    # Read by a child process: closing a descriptor of the database file in this
    # process would drop every POSIX lock the process holds on it, including the test
    # connection's. A server process closing later then believed itself the last
    # connection and deleted the WAL, and this process's later writes went to the
    # unlinked WAL, unseen by later server processes (tests/events/test_live.py
    # refused the next test's staff token). SQLite's "How To Corrupt", section 2.2.
    files = [f"{path}{suffix}" for suffix in ("", "-wal", "-journal")]
    found = [f for f in files if Path(f).exists()]
    return b"\n".join(
        subprocess.run(["cat", f], check=True, capture_output=True).stdout for f in found
    )


async def stored_bytes() -> bytes:
    """Everything the database holds. SQLite: the file and its WAL as they are on disk
    (free pages and old frames included, no checkpoint first). PostgreSQL: every row of
    every table in the schema, each cast to text (all columns, whatever their type)."""
    conn = connections.get("default")
    if conn.capabilities.dialect == "sqlite":
        return sqlite_files(Path(conn.filename))  # type: ignore[attr-defined]
    tables = await conn.execute_query_dict(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    out = []
    for row in tables:
        name = row["tablename"]
        rows = await conn.execute_query_dict(f'SELECT t::text AS r FROM "{name}" t')  # noqa: S608
        out.extend(r["r"].encode() for r in rows)
    return b"\n".join(out)


async def assert_no_token_stored(tokens: list[str]) -> bytes:
    data = await stored_bytes()
    for token in tokens:
        for form in forms(token):
            assert form not in data, f"a raw link token ({len(form)} bytes) is in the database"
    return data


async def token_error(api: Api, token: str) -> str | None:
    info = (await api.gql(TOKEN_INFO, {"t": token}))["data"]["tokenInfo"]
    assert info["valid"] is (info["error"] is None)
    return info["error"]


async def text_patient(api: Api, staff: Staff, n: int) -> str:
    return await enabled_patient(
        api, staff.token, n=n, email=None, mobilePhone=MOBILE, smsConsent=True
    )


@contextlib.asynccontextmanager
async def app_with(database: str, smtp_port: int, **overrides: Any) -> AsyncIterator[Api]:
    """A second instance of the service on the same database, e.g. after a key change."""
    settings = make_settings(database, smtp_port, **overrides)
    app = create_app(settings, manage_database=False)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
        yield Api(client, app, settings)
    await app.state.services.background.drain()
    app.state.services.hasher.close()
    app.state.services.limiter.close()


async def test_no_raw_link_in_the_database_queued_or_sent(
    api: Api, staff: Staff, mailbox: Mailbox, twilio: TwilioFake, issued: list[NewLink]
) -> None:
    """TOK-2: a staff invitation by email, one by text and a self-service link; no token
    is in the database file, WAL or any table while the messages wait nor after they
    left, and the links the patients receive are exactly the tokens derived."""
    by_mail = await enabled_patient(api, staff.token, n=1)
    by_text = await text_patient(api, staff, n=2)
    for pid in (by_mail, by_text):
        assert (await invite(api, staff.token, pid))["userErrors"] == []
    await enabled_patient(api, staff.token, n=3)
    result = await api.gql(SELF_RESET, {"input": identity(3)})
    assert result["data"]["requestSelfReset"]["ok"] is True
    await api.services.background.drain()
    assert len(issued) == 3
    tokens = [new.token for new in issued]

    # Queued: what the outbox keeps is the nonce and the digest, and the scan sees it
    # (so a token there would have been seen too).
    queued = await OutboxMessage.filter(link_id__not_isnull=True).order_by("id")
    assert len(queued) == 3 and {m.channel for m in queued} == {"email", "sms"}
    data = await assert_no_token_stored(tokens)
    for message, new in zip(queued, issued, strict=True):
        assert "link" not in message.params
        assert (message.params["link_nonce"], message.params["link_digest"]) == (
            new.nonce,
            new.digest,
        )
        assert new.nonce.encode() in data
    links = await LinkToken.all().order_by("id")
    assert [link.digest for link in links] == [new.digest for new in issued]

    await api.deliver()

    received = [
        token_from(mailbox.to("avery.quinn1@example.com")[0]),
        twilio.to(MOBILE)[0]["Body"].split("#token=", 1)[1].split()[0],
        token_from(mailbox.to("avery.quinn3@example.com")[0]),
    ]
    assert received == tokens  # the dispatcher re-derived each link exactly
    data = await assert_no_token_stored(tokens)
    for new in issued:  # nothing left to re-derive a sent link from
        assert new.nonce.encode() not in (await stored_text_of_outbox())
    assert (await redeem(api, received[0], "avery.q"))["userErrors"] == []
    assert (await redeem(api, received[1], "blair.q"))["userErrors"] == []
    await assert_no_token_stored(tokens)


async def stored_text_of_outbox() -> bytes:
    rows = await OutboxMessage.all().values_list("params", flat=True)
    return json.dumps(rows).encode()


async def test_rotation_keeps_queued_mail_and_sent_links_working(
    api: Api, staff: Staff, mailbox: Mailbox, database: str, issued: list[NewLink]
) -> None:
    """PORTAL_SECRET_KEY_PREVIOUS: a link sent under the old key still redeems, mail
    queued under it still leaves with a working link, and new links use the new key."""
    sent_before = await enabled_patient(api, staff.token, n=1)
    queued_before = await enabled_patient(api, staff.token, n=2)
    assert (await invite(api, staff.token, sent_before))["userErrors"] == []
    await api.deliver()
    old_token = token_from(mailbox.to("avery.quinn1@example.com")[0])
    assert (await invite(api, staff.token, queued_before))["userErrors"] == []
    await api.services.background.drain()
    [_, queued_new] = issued
    assert LinkKeys(KEY_A).token_for(queued_new.nonce, queued_new.digest) == queued_new.token

    port = api.settings.smtp_port
    async with app_with(database, port, secret_key=KEY_B, secret_key_previous=KEY_A) as rotated:
        await rotated.deliver()  # the message queued under KEY_A
        queued_token = token_from(mailbox.to("avery.quinn2@example.com")[0])
        assert queued_token == queued_new.token

        fresh = await enabled_patient(rotated, staff.token, n=3)
        assert (await invite(rotated, staff.token, fresh))["userErrors"] == []
        await rotated.deliver()
        new_token = token_from(mailbox.to("avery.quinn3@example.com")[0])
        latest = issued[-1]
        assert latest.token == new_token
        assert LinkKeys(KEY_B).token_for(latest.nonce, latest.digest) == new_token
        assert LinkKeys(KEY_A).token_for(latest.nonce, latest.digest) is None

        for token, username in ((old_token, "first.q"), (queued_token, "second.q")):
            assert (await redeem(rotated, token, username))["userErrors"] == []
        assert (await redeem(rotated, new_token, "third.q"))["userErrors"] == []


PAGE = """query($after: String) { onboarding(first: 1, after: $after) {
  edges { node { chartNumber } } pageInfo { endCursor } } }"""


async def test_rotation_keeps_the_tools_cursors_working(
    api: Api, staff: Staff, database: str
) -> None:
    """A page cursor sealed under the old key still pages after the rotation (the Tool
    keeps its place across the deploy); without PREVIOUS it is refused, typed."""
    for n in (1, 2):
        await create_patient(api, staff.token, n=n)
    first = await api.gql(PAGE, {}, staff.token)
    cursor = first["data"]["onboarding"]["pageInfo"]["endCursor"]
    seen = first["data"]["onboarding"]["edges"][0]["node"]["chartNumber"]

    port = api.settings.smtp_port
    async with app_with(database, port, secret_key=KEY_B, secret_key_previous=KEY_A) as rotated:
        rest = await rotated.gql(PAGE, {"after": cursor}, staff.token)
        [edge] = rest["data"]["onboarding"]["edges"]
        assert edge["node"]["chartNumber"] != seen
        # new cursors are sealed with the new key only
        fresh = rest["data"]["onboarding"]["pageInfo"]["endCursor"]
    async with app_with(database, port, secret_key=KEY_A) as old_only:
        refused = await old_only.gql(PAGE, {"after": fresh}, staff.token)
        assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    async with app_with(database, port, secret_key=KEY_B) as without_previous:
        refused = await without_previous.gql(PAGE, {"after": cursor}, staff.token)
        assert refused["data"] is None
        assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_wrong_key_yields_no_working_link(
    api: Api, staff: Staff, mailbox: Mailbox, issued: list[NewLink]
) -> None:
    """A dump and the wrong key (or a key rotated away without PREVIOUS): what can be
    derived from the stored nonce opens nothing, and the dispatcher refuses to send a
    link it cannot derive: the message fails and its link is revoked."""
    pid = await enabled_patient(api, staff.token, n=1)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.services.background.drain()
    [message] = await OutboxMessage.all()
    nonce, digest = message.params["link_nonce"], message.params["link_digest"]
    assert LinkKeys(KEY_WRONG).token_for(nonce, digest) is None
    # What the wrong key derives from the real nonce, tried as a link:
    forged = link_keys._token(link_keys._link_key(KEY_WRONG), nonce)
    assert forged != issued[0].token
    assert await token_error(api, forged) == "TOKEN_INVALID"

    wrong = make_settings("", api.settings.smtp_port, secret_key=KEY_WRONG)
    stats = await Dispatcher(wrong, on_outcome=record_delivery_outcome).drain()
    assert (stats.sent, stats.failed) == (0, 1)
    assert mailbox.messages == []
    [message] = await OutboxMessage.all()
    assert message.status == OutboxStatus.FAILED and message.params == {}
    [link] = await LinkToken.all()
    assert link.revoke_reason == RevokeReason.UNDELIVERABLE
    assert link.delivery_status == DeliveryStatus.FAILED
    assert "LinkUnavailable" in (link.delivery_detail or "")
    # The real token (known only to this test) no longer opens anything either.
    assert await token_error(api, issued[0].token) == "TOKEN_INVALID"


async def test_mail_queued_before_link_keys_fails_closed(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """Migration 0015: a pending message still holding a raw link (queued by the version
    before) is failed and scrubbed and its link revoked, so the raw link opens nothing;
    the dispatcher never sends such a row either."""
    migration = importlib.import_module("models.migrations.0015_link_keys")
    raw = "legacy-raw-token-" + "x" * 26
    tokens = []
    for n in (1, 2):
        pid = await enabled_patient(api, staff.token, n=n)
        assert (await invite(api, staff.token, pid))["userErrors"] == []
    await api.services.background.drain()
    messages = await OutboxMessage.all().order_by("id")
    links = await LinkToken.all().order_by("id")
    # Rewrite both as the old version queued them: the raw link in the variables.
    for i, (message, link) in enumerate(zip(messages, links, strict=True)):
        token = f"{raw}{i}"
        tokens.append(token)
        params = {k: v for k, v in message.params.items() if not k.startswith("link_")} | {
            "link": f"https://portal.clinic.test/activate#token={token}"
        }
        await OutboxMessage.filter(id=message.id).update(params=params)
        await LinkToken.filter(id=link.id).update(digest=digest(token))
    assert await token_error(api, tokens[0]) is None

    # The first row through the dispatcher as it stands: refused, not sent.
    await OutboxMessage.filter(id=messages[1].id).update(
        next_attempt_at=utcnow().replace(year=2100)
    )
    stats = await api.services.dispatcher.drain()
    assert (stats.sent, stats.failed) == (0, 1) and mailbox.messages == []

    # The second one by the migration.
    await OutboxMessage.filter(id=messages[1].id).update(next_attempt_at=utcnow())

    class Editor:
        client = connections.get("default")

    await migration.fail_messages_holding_links(None, Editor())
    rows = await OutboxMessage.all().order_by("id")
    assert [(m.status, m.params) for m in rows] == [(OutboxStatus.FAILED, {})] * 2
    assert rows[1].last_error == migration.DETAIL
    link = await LinkToken.get(id=links[1].id)
    assert (link.revoke_reason, link.delivery_status) == (
        RevokeReason.UNDELIVERABLE,
        DeliveryStatus.FAILED,
    )
    assert link.delivery_detail == migration.DETAIL
    for token in tokens:
        assert await token_error(api, token) == "TOKEN_INVALID"
    assert (await api.services.dispatcher.drain()).handled == 0
