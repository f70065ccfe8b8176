"""Text messages (SPEC 9.3): transports for the outbox's ``sms`` rows.

``PORTAL_SMS_BACKEND`` picks one: ``file`` (one .txt per message, development's phone),
``console`` (prints, links included: development only) or ``twilio`` (the Messages REST
API over httpx). They settle each message as the mail transports do, so texts share the
outbox's retries, backoff and delivery outcomes: a number the carrier or Twilio refuses
for good (HTTP 4xx other than 429) fails at once and the link it carried is revoked, as
for a bounced email; throttling (429), server errors and network trouble are retried.

:class:`ByChannel` is what the dispatcher holds: it hands each item to the mail or the
text transport by its channel, so the dispatcher itself stays channel-blind.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import anyio
import httpx

from core.settings import Settings
from mail.transports import (
    HandOver,
    OneStepTransport,
    Outcome,
    Outgoing,
    Proceed,
    Result,
    Settle,
    Transport,
    hand_each,
)

SMS = "sms"

# GSM 03.38 basic character set and its extension table (an extension character takes
# two of a segment's 160 places).
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"


def gsm7_length(text: str) -> int | None:
    """Septets the text takes in GSM-7, or None when it needs UCS-2 (70 a segment)."""
    length = 0
    for char in text:
        if char in GSM7_BASIC:
            length += 1
        elif char in GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


class SmsFileTransport(OneStepTransport):
    """Development: one ``.txt`` per message in ``PORTAL_SMS_DIR``, the number first."""

    def __init__(self, settings: Settings) -> None:
        self.directory = Path(settings.sms_dir)

    async def prepare(self) -> None:
        await anyio.Path(self.directory).mkdir(parents=True, exist_ok=True)

    async def send_one(self, item: Outgoing) -> Result:
        name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex}.txt"
        await anyio.Path(self.directory / name).write_text(
            f"To: {item.to_addr}\n\n{item.text}\n", encoding="utf-8"
        )
        return Result(Outcome.SENT, "written")


class SmsConsoleTransport(OneStepTransport):
    """Development only: prints texts, links included, to stdout."""

    def __init__(self, settings: Settings) -> None:
        del settings

    async def send_one(self, item: Outgoing) -> Result:
        sys.stdout.write(f"SMS to {item.to_addr}:\n{item.text}\n\n")
        sys.stdout.flush()
        return Result(Outcome.SENT, "printed")


TEXTS_OFF = "text messages are turned off (PORTAL_SMS_BACKEND=off)"


class SmsOffTransport(OneStepTransport):
    """A clinic that does not text: sendInvitation refuses SMS up front
    (``SMS_NOT_AVAILABLE``); what still reaches the outbox (queued before the switch, or
    a notice to a patient whose only address is a mobile) fails at once with this reason,
    so its link is revoked and staff see why."""

    def __init__(self, settings: Settings) -> None:
        del settings

    async def send_one(self, item: Outgoing) -> Result:
        del item
        return Result(Outcome.PERMANENT, TEXTS_OFF)


class TwilioTransport:
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` with basic auth (account SID and
    auth token) and form fields ``To``, ``From`` and ``Body``; one HTTP/1.1 connection
    pool per batch. The detail kept on the link is Twilio's own words: ``queued SM…`` on
    success, ``21211 The 'To' number … is not a valid phone number.`` on a refusal."""

    def __init__(self, settings: Settings) -> None:
        assert settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from
        self.settings = settings
        self.sid = settings.twilio_account_sid
        self.auth = (settings.twilio_account_sid, settings.twilio_auth_token)
        self.url = (
            f"{settings.twilio_api_base.rstrip('/')}/2010-04-01/Accounts/{self.sid}/Messages.json"
        )
        sender = settings.twilio_from
        # A Messaging Service SID goes in its own field; Twilio picks the number.
        self.sender_field = (
            ("MessagingServiceSid", sender)
            if sender.startswith("MG")
            else (
                "From",
                sender,
            )
        )

    async def send(
        self,
        items: Sequence[Outgoing],
        proceed: Proceed,
        settle: Settle,
        hand_over: HandOver | None = None,
    ) -> None:
        if not items:
            return
        async with httpx.AsyncClient(
            auth=self.auth, timeout=self.settings.twilio_timeout_seconds
        ) as client:
            # Once the POST is written Twilio may have the text, and its API takes no
            # idempotency key: the POST and the commit of its outcome are the worker's
            # one hand-over turn (mail/transports.py), so a killed worker leaves at most
            # one text (or email) that may go twice.
            await hand_each(
                items, proceed, settle, hand_over, lambda item: self._send_one(client, item)
            )

    async def _send_one(self, client: httpx.AsyncClient, item: Outgoing) -> Result:
        form = {"To": item.to_addr, self.sender_field[0]: self.sender_field[1], "Body": item.text}
        try:
            response = await client.post(self.url, data=form)
        except httpx.HTTPError as exc:
            return Result(Outcome.TRANSIENT, type(exc).__name__)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code in (200, 201):
            status = str(body.get("status") or "queued")
            return Result(Outcome.SENT, f"{status} {body.get('sid') or ''}".strip()[:300])
        code = body.get("code")
        message = str(body.get("message") or response.reason_phrase)
        detail = (f"{code} {message}" if code else f"HTTP {response.status_code} {message}")[:300]
        if response.status_code == 429 or response.status_code >= 500:
            return Result(Outcome.TRANSIENT, detail)
        # 400 (21211 invalid number, 21610 unsubscribed recipient, …), 401, 403, 404:
        # sending again would get the same answer.
        return Result(Outcome.PERMANENT, detail)


def sms_transport_for(settings: Settings) -> Transport:
    if settings.sms_backend == "twilio":
        return TwilioTransport(settings)
    if settings.sms_backend == "console":
        return SmsConsoleTransport(settings)
    if settings.sms_backend == "off":
        return SmsOffTransport(settings)
    return SmsFileTransport(settings)


class ByChannel:
    """One transport for the dispatcher: mail items to ``mail``, text items to ``sms``,
    results in the items' order; both share the dispatcher's one hand-over turn."""

    def __init__(self, mail: Transport, sms: Transport) -> None:
        self.mail = mail
        self.sms = sms

    async def send(
        self,
        items: Sequence[Outgoing],
        proceed: Proceed,
        settle: Settle,
        hand_over: HandOver | None = None,
    ) -> None:
        hand_over = hand_over or HandOver(proceed)
        texts = [i for i, item in enumerate(items) if item.channel == SMS]
        if not texts:
            await self.mail.send(items, proceed, settle, hand_over)
            return
        mails = [i for i, item in enumerate(items) if item.channel != SMS]
        for indexes, transport in ((mails, self.mail), (texts, self.sms)):
            if not indexes:
                continue

            async def settle_in_lane(k: int, result: Result, indexes: list[int] = indexes) -> None:
                # The sub-transport counts within its own items; the dispatcher, in the lane.
                await settle(indexes[k], result)

            await transport.send([items[i] for i in indexes], proceed, settle_in_lane, hand_over)
