"""Transports: ``smtp`` (aiosmtplib), ``file`` (one .eml per message, the embedded
default's mailbox) and ``console``. Each sends a lane of messages in order and reports
every message the moment its fate is known (``settle``), so the dispatcher records it as
sent before the next one leaves; it asks ``proceed`` before each message, so a worker
that is stopping or whose lease is running out sends nothing more.

A worker runs several lanes at once, but only one message of the whole worker is ever
between "handed over for good" and "recorded": the step after which the message may be
the server's (SMTP's DATA, Twilio's POST, writing the file) is taken inside the worker's
:class:`HandOver` turn, and the turn is held until ``settle`` has committed. So a worker
killed at any moment leaves at most one message whose fate nobody knows, and only that
one can be sent twice. With SMTP, connecting, EHLO, MAIL and RCPT of several lanes still
overlap; only DATA, the server's acceptance and the commit are one at a time.

Only a permanent reply to a message (5xx to MAIL, RCPT or DATA) is PERMANENT. A server
that cannot be reached, times out, drops the connection or refuses the session (even with
a 5xx greeting or AUTH failure: that is our configuration or their outage, not this
recipient) is TRANSIENT: an outage is not a bounce."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import anyio

from core.settings import Settings
from mail.mime import message_bytes


class Outcome(Enum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    detail: str | None = None


@dataclass(frozen=True)
class Outgoing:
    to_addr: str
    subject: str
    text: str
    html: str
    # SPEC 9: "sms" items go to mail/sms.py's transports; the clinic's reply-to address
    # and sender display name go into the email's headers.
    channel: str = "email"
    reply_to: str | None = None
    sender_name: str | None = None


def build_message(sender: str, item: Outgoing) -> bytes:
    if item.sender_name:
        # The clinic's name in front of the deployment's sending address (SPF/DKIM stay
        # the deployment's; only the display name is the clinic's).
        sender = formataddr((item.sender_name, parseaddr(sender)[1] or sender), "utf-8")
    return message_bytes(
        sender=sender,
        to_addr=item.to_addr,
        subject=item.subject,
        text=item.text,
        html=item.html,
        reply_to=item.reply_to,
    )


Proceed = Callable[[], bool]
Settle = Callable[[int, Result], Awaitable[None]]


class HandOver:
    """One worker's single turn to hand a message over for good (see the module's
    docstring). ``async with hand_over.turn() as go``: the turn is the worker's until the
    block ends, and ``go`` says whether the message may still leave (``proceed()`` asked
    again once the turn came: a lane may have waited for it while the worker began to
    stop or its lease ran short). A transport calls ``settle`` for a message it handed
    over before leaving the block."""

    def __init__(self, proceed: Proceed = lambda: True, lock: asyncio.Lock | None = None) -> None:
        self.proceed = proceed
        self._lock = lock if lock is not None else asyncio.Lock()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        async with self._lock:
            yield self.proceed()


async def hand_each(
    items: Sequence[Outgoing],
    proceed: Proceed,
    settle: Settle,
    hand_over: HandOver | None,
    send_one: Callable[[Outgoing], Awaitable[Result]],
) -> None:
    """The lane of a transport whose every message is handed over in one step (a file
    written, a line printed, an HTTP POST): each ``send_one`` and the settling of its
    result in the worker's hand-over turn, in order, until ``proceed`` says stop."""
    hand_over = hand_over or HandOver(proceed)
    for i, item in enumerate(items):
        if not proceed():
            return
        async with hand_over.turn() as go:
            if not go:
                return
            await settle(i, await send_one(item))


class Transport(Protocol):
    async def send(
        self,
        items: Sequence[Outgoing],
        proceed: Proceed,
        settle: Settle,
        hand_over: HandOver | None = None,
    ) -> None:
        """Send ``items`` in order; ``proceed()`` before each, ``await settle(i, result)``
        right after each, inside ``hand_over``'s turn for a message that was handed over.
        Items never settled were not attempted."""


class OneStepTransport:
    """A transport whose every message is handed over in one step (a file written, a
    line printed): subclasses say how to send one message, ``send`` runs them as
    ``hand_each``'s lane."""

    async def prepare(self) -> None:
        """Before the first message of a batch (e.g. the folder it writes into)."""

    async def send(
        self,
        items: Sequence[Outgoing],
        proceed: Proceed,
        settle: Settle,
        hand_over: HandOver | None = None,
    ) -> None:
        await self.prepare()
        await hand_each(items, proceed, settle, hand_over, self.send_one)

    async def send_one(self, item: Outgoing) -> Result:
        raise NotImplementedError


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only, and whole or absent under its name: the message is written under a
    hidden name and renamed, so a reader of ``*.eml`` (a developer's mail viewer, a
    test) never opens half a message."""
    partial = path.with_name(f".{path.name}.part")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.rename(partial, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(partial)
        raise


class FileTransport(OneStepTransport):
    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        self.directory = Path(settings.mail_dir)

    async def prepare(self) -> None:
        # Messages carry live links: owner-only folder and files, whatever the umask.
        await anyio.Path(self.directory).mkdir(mode=0o700, parents=True, exist_ok=True)

    async def send_one(self, item: Outgoing) -> Result:
        # Sortable by time, unique, and free of characters some file systems refuse.
        name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex}.eml"
        data = build_message(self.sender, item)
        await anyio.to_thread.run_sync(_write_private, self.directory / name, data)
        return Result(Outcome.SENT, "written")


class ConsoleTransport(OneStepTransport):
    """Development only: prints whole messages, links included, to stdout."""

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from

    async def send_one(self, item: Outgoing) -> Result:
        sys.stdout.write(build_message(self.sender, item).decode() + "\n")
        sys.stdout.flush()
        return Result(Outcome.SENT, "printed")


class NotHandedOver(Exception):
    """The lane's hand-over turn came too late (stopping, or the lease ran short): the
    message was not given to the server."""


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client whose DATA waits for the worker's hand-over turn. What comes
    before it (EHLO, MAIL, RCPT) leaves nothing at the server, so lanes overlap there;
    from DATA on the message may be the server's, so that part, and the commit of its
    outcome, is one message at a time per worker."""

    turn: Callable[[], Awaitable[bool]] | None = None
    deadline: float = 60.0

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if self.turn is not None and not await self.turn():
            raise NotHandedOver
        # Timed from the turn on, not from the wait for it: DATA and the final reply
        # are what the lease margin (``message_deadline``) has to cover.
        return await asyncio.wait_for(super().data(message, **kwargs), self.deadline)


class SmtpTransport:
    """One connection per lane, reused for every message in it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envelope_from = parseaddr(settings.mail_from)[1] or settings.mail_from

    @property
    def message_deadline(self) -> float:
        """The longest one message may take, connection included; the dispatcher starts a
        message only when its lease outlasts this."""
        return message_deadline(self.settings)

    def _client(self) -> _Client:
        s = self.settings
        client = _Client(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls == "tls",
            start_tls=True if s.smtp_tls == "starttls" else False,
            timeout=s.smtp_timeout_seconds,
        )
        client.deadline = self.message_deadline
        return client

    async def send(
        self,
        items: Sequence[Outgoing],
        proceed: Proceed,
        settle: Settle,
        hand_over: HandOver | None = None,
    ) -> None:
        hand_over = hand_over or HandOver(proceed)
        client: _Client | None = None
        try:
            for i, item in enumerate(items):
                if not proceed():
                    return
                if client is None or not client.is_connected:
                    client = self._client()
                    try:
                        await asyncio.wait_for(client.connect(), self.message_deadline)
                    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                        # Nothing was handed over: every message of the lane waits for
                        # its retry instead of hammering a server that is not there.
                        client = None
                        reason = "cannot open an SMTP session: " + _reply(exc)
                        for k in range(i, len(items)):
                            await settle(k, Result(Outcome.TRANSIENT, reason))
                        return
                # The turn, once DATA has taken it, is held until the outcome is settled
                # (recorded): the next DATA of any lane of this worker waits until then.
                async with AsyncExitStack() as held:

                    async def take_turn(held: AsyncExitStack = held) -> bool:
                        return await held.enter_async_context(hand_over.turn())

                    client.turn = take_turn
                    result = await self._send_one(client, item)
                    if result is None:
                        return
                    if result.outcome is Outcome.TRANSIENT and not client.is_connected:
                        client = None
                    await settle(i, result)
        finally:
            if client is not None and client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), self.settings.smtp_timeout_seconds)
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.close()

    async def _send_one(self, client: _Client, item: Outgoing) -> Result | None:
        """The message's result, or None when its hand-over turn came too late (the
        server holds an open MAIL transaction, which QUIT discards)."""
        data = build_message(self.settings.mail_from, item)
        try:
            # MAIL, RCPT: each bounded by the client's command timeout; DATA by the
            # message deadline from its turn on (``_Client.data``).
            errors, reply = await client.sendmail(self.envelope_from, [item.to_addr], data)
        except NotHandedOver:
            return None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = all(code >= 500 for code in codes)
            return Result(
                Outcome.PERMANENT if permanent else Outcome.TRANSIENT, _reply(exc, item.to_addr)
            )
        except aiosmtplib.SMTPResponseException as exc:
            outcome = Outcome.PERMANENT if exc.code >= 500 else Outcome.TRANSIENT
            return Result(outcome, _reply(exc, item.to_addr))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # The server may or may not have taken the message: the connection is not
            # trusted any more, and the retry may deliver a second copy (at most one).
            client.close()
            return Result(Outcome.TRANSIENT, _reply(exc, item.to_addr))
        return Result(Outcome.SENT, reply[:300])


def message_deadline(settings: Settings) -> float:
    # Connect, EHLO, (STARTTLS, AUTH,) MAIL, RCPT, DATA: each bounded by the SMTP timeout
    # on its own; a message as a whole gets three of them.
    return 3 * settings.smtp_timeout_seconds


_DESCRIBE = {
    ConnectionRefusedError: "connection refused",
    TimeoutError: "timed out",
    aiosmtplib.SMTPTimeoutError: "timed out",
    aiosmtplib.SMTPConnectTimeoutError: "connection timed out",
    aiosmtplib.SMTPServerDisconnected: "server disconnected",
}


def _reply(exc: BaseException, address: str | None = None) -> str:
    """Why a message did not leave, for the outbox row, the link and the logs. SMTP
    replies often echo the recipient; it is replaced so no log line carries an address."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {exc.message}"
    else:
        # aiosmtplib wraps the socket's error (SMTPConnectError from ConnectionRefused…).
        cause = exc.__cause__ or exc.__context__
        named = cause if cause is not None and type(cause) in _DESCRIBE else exc
        label = _DESCRIBE.get(type(named))
        if label is None:
            label = next((d for t, d in _DESCRIBE.items() if isinstance(named, t)), "failed")
        text = f"{label} ({type(named).__name__})"
    return (without_address(text, address) or "")[:300]


def without_address(reason: str | None, address: str | None) -> str | None:
    """Servers quote the recipient in their replies ("550 5.1.1 <rosa@example.com>:
    Recipient address rejected"); a reason goes to the log and to the link, so the
    address is cut out of it."""
    if not reason or not address:
        return reason
    return re.sub(re.escape(address), "<recipient>", reason, flags=re.IGNORECASE)


def transport_for(settings: Settings) -> Transport:
    if settings.mail_backend == "smtp":
        return SmtpTransport(settings)
    if settings.mail_backend == "console":
        return ConsoleTransport(settings)
    return FileTransport(settings)
