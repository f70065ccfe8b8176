"""Transports: ``smtp`` (aiosmtplib), ``file`` (one .eml per message, the embedded
default's mailbox) and ``console``. Each sends a batch and reports per message, so the
dispatcher can retry transient failures and give up on permanent ones."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from enum import Enum
from pathlib import Path
from typing import Protocol

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


class Transport(Protocol):
    async def send(self, items: Sequence[Outgoing]) -> list[Result]: ...


class FileTransport:
    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from
        self.directory = Path(settings.mail_dir)

    async def send(self, items: Sequence[Outgoing]) -> list[Result]:
        await anyio.Path(self.directory).mkdir(parents=True, exist_ok=True)
        results = []
        for item in items:
            # Sortable by time, unique, and free of characters some file systems refuse.
            name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex}.eml"
            data = build_message(self.sender, item)
            await anyio.Path(self.directory / name).write_bytes(data)
            results.append(Result(Outcome.SENT, "written"))
        return results


class ConsoleTransport:
    """Development only: prints whole messages, links included, to stdout."""

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.mail_from

    async def send(self, items: Sequence[Outgoing]) -> list[Result]:
        for item in items:
            sys.stdout.write(build_message(self.sender, item).decode() + "\n")
        sys.stdout.flush()
        return [Result(Outcome.SENT, "printed") for _ in items]


class SmtpTransport:
    """One connection per batch, reused for every message in it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envelope_from = parseaddr(settings.mail_from)[1] or settings.mail_from

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls == "tls",
            start_tls=True if s.smtp_tls == "starttls" else False,
            timeout=s.smtp_timeout_seconds,
        )

    async def send(self, items: Sequence[Outgoing]) -> list[Result]:
        if not items:
            return []
        client = self._client()
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            detail = _reply(exc)
            permanent = isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 500
            outcome = Outcome.PERMANENT if permanent else Outcome.TRANSIENT
            return [Result(outcome, detail) for _ in items]
        results: list[Result] = []
        try:
            for item in items:
                results.append(await self._send_one(client, item))
        finally:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
        return results

    async def _send_one(self, client: aiosmtplib.SMTP, item: Outgoing) -> Result:
        data = build_message(self.settings.mail_from, item)
        try:
            if not client.is_connected:
                await client.connect()
            errors, reply = await client.sendmail(self.envelope_from, [item.to_addr], data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = all(code >= 500 for code in codes)
            return Result(Outcome.PERMANENT if permanent else Outcome.TRANSIENT, _reply(exc))
        except aiosmtplib.SMTPResponseException as exc:
            outcome = Outcome.PERMANENT if exc.code >= 500 else Outcome.TRANSIENT
            return Result(outcome, _reply(exc))
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Result(Outcome.TRANSIENT, _reply(exc))
        return Result(Outcome.SENT, reply[:300])


def _reply(exc: BaseException) -> str:
    # SMTP replies name the server's view of the failure; they never carry our body.
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(f"{r.code} {r.message}" for r in exc.recipients)[:300]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"[:300]
    return type(exc).__name__


def transport_for(settings: Settings) -> Transport:
    if settings.mail_backend == "smtp":
        return SmtpTransport(settings)
    if settings.mail_backend == "console":
        return ConsoleTransport(settings)
    return FileTransport(settings)
