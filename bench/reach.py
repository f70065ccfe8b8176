"""Mail and text throughput with catalog rendering (SPEC 9.2, 9.3), against English in
the same run.

``python -m bench.reach [--messages N] [--rounds R]`` queues N messages in a throwaway
SQLite outbox and times the real dispatcher (``mail.dispatcher.Dispatcher.drain``)
sending them: email over SMTP to an in-process aiosmtpd sink, texts through the Twilio
transport to the local Twilio stand-in (``tests/twilio_fake.py``, a real HTTP server).
Each kind runs with every patient in Spanish (rendered from the ``es`` catalog) and in
English (the source strings), alternating, R rounds each; the figure is the median
messages/s and the ratio Spanish / English. Two message kinds: the bulk invitation
(rendered once per variant, then two strings filled in per patient) and the
password-changed notice (every message runs its templates).

Everything but the database is in this process, so the figures compare renderings, not
machines; absolute numbers depend on the CPU and are not comparable across hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from typing import Any

from aiosmtpd.controller import Controller

from core.clock import utcnow
from core.link_keys import LinkKeys
from core.settings import Settings
from mail import compose, outbox
from mail.dispatcher import Dispatcher
from models import OutboxMessage, Patient, Practice
from models.database import connect, disconnect, migrate
from onboarding.delivery import record_delivery_outcome
from tests.conftest import free_port
from tests.twilio_fake import ACCOUNT_SID, AUTH_TOKEN, FROM, Running, TwilioFake


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += 1
        return "250 Message accepted"


async def queue(
    practice: Practice, n: int, *, language: str, kind: str, channel: str, keys: LinkKeys
) -> None:
    now = utcnow()
    messages = []
    for i in range(n):
        patient = Patient(
            id=i + 1, practice_id=practice.id, first_name=f"Rosa{i}", preferred_language=language
        )
        if kind == "invitation":
            new = keys.issue()  # re-derived by the dispatcher, as in the service
            draft = compose.invitation(
                practice,
                patient,
                link=compose.LinkRef(
                    "https://portal.clinic.example/activate", new.nonce, new.digest
                ),
                expires_at=now + timedelta(days=1),
                reset=False,
                self_service=False,
            )
        else:
            draft = compose.password_notice(practice, patient, kind="password_changed", when=now)
        address = f"+1617555{i % 10000:04d}" if channel == "sms" else f"p{i}@example.com"
        messages.append(
            outbox.message(
                practice_id=practice.id,
                patient_id=None,
                to_addr=address,
                draft=draft,
                channel=channel,
            )
        )
    await outbox.enqueue(messages)


async def timed_drain(dispatcher: Dispatcher) -> float:
    started = time.perf_counter()
    stats = await dispatcher.drain()
    elapsed = time.perf_counter() - started
    assert stats.failed == 0 and stats.retried == 0, stats
    return stats.sent / elapsed


async def main(messages: int, rounds: int) -> None:
    folder = tempfile.mkdtemp(prefix="bench-reach-")
    url = f"sqlite://{folder}/reach.sqlite3"
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    twilio = TwilioFake(free_port())
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        mail_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        sms_backend="twilio",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from=FROM,
        twilio_api_base=twilio.base,
    )
    await migrate(url)
    await connect(url)
    try:
        practice = await Practice.create(
            name="Maple Street Clinic",
            phone="+16175550142",
            reply_to="front.desk@maple-street.example",
            time_zone="America/New_York",
        )
        dispatcher = Dispatcher(settings, on_outcome=record_delivery_outcome)
        results: dict[tuple[str, str, str], list[float]] = {}
        with Running(twilio):
            for _ in range(rounds):
                for channel in ("email", "sms"):
                    # texts go one HTTP request each: a tenth as many keep the run short
                    n = messages if channel == "email" else max(50, messages // 10)
                    for kind in ("invitation", "notice"):
                        for language in ("en", "es"):
                            await queue(
                                practice,
                                n,
                                language=language,
                                kind=kind,
                                channel=channel,
                                keys=dispatcher.link_keys,
                            )
                            rate = await timed_drain(dispatcher)
                            results.setdefault((channel, kind, language), []).append(rate)
                            await OutboxMessage.all().delete()
        print(f"messages per run: email {messages}, sms {max(50, messages // 10)}; rounds {rounds}")
        print(f"{'channel':8} {'kind':11} {'en msg/s':>10} {'es msg/s':>10} {'es/en':>7}")
        for channel in ("email", "sms"):
            for kind in ("invitation", "notice"):
                en = statistics.median(results[(channel, kind, "en")])
                es = statistics.median(results[(channel, kind, "es")])
                print(f"{channel:8} {kind:11} {en:10.0f} {es:10.0f} {es / en:7.2f}")
    finally:
        await disconnect()
        controller.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds))
