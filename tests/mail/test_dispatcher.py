"""The outbox dispatcher and transports (SPEC 5, 7.3): retries with backoff over real
SMTP, permanent failures that revoke the link, scrubbed bodies, one connection per
batch, and the file transport's .eml mailbox."""

from __future__ import annotations

import email
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import time_machine

from core.clock import utcnow
from core.link_keys import LinkKeys
from core.settings import Settings
from mail.dispatcher import BACKOFF_BASE_SECONDS, Dispatcher
from mail.transports import FileTransport, Outcome, Outgoing, _write_private
from models import LinkToken, OutboxMessage, OutboxStatus, Patient
from onboarding.delivery import record_delivery_outcome
from tests.conftest import Api, Mailbox, Staff, body_text, free_port, token_from
from tests.helpers import PATIENT, enabled_patient, invite, pk

EMAIL = "avery.quinn1@example.com"

TOKEN_INFO = """
query($token: String!) { tokenInfo(token: $token) { valid error } }"""

SEND = """
mutation($ids: [ID!]!) {
  sendInvitation(input: {patientIds: $ids}) { results { userErrors { code } } }
}"""


async def patient(api: Api, staff: Staff, pid: str) -> dict[str, Any]:
    return (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]


async def invited(api: Api, staff: Staff, n: int = 1) -> str:
    pid = await enabled_patient(api, staff.token, n=n)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    return pid


# --- retries -------------------------------------------------------------------------


async def test_transient_failure_is_retried_after_the_backoff(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given the receiving server answers "try later"
    mailbox.refuse[EMAIL] = "451 4.3.0 try later"
    pid = await invited(api, staff)

    # when the dispatcher runs
    await api.deliver()

    # then nothing arrived, the message waits for a retry, the link is still queued
    assert mailbox.messages == []
    row = await OutboxMessage.get()
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1)
    assert row.last_error is not None and row.last_error.startswith("451")
    assert (await patient(api, staff, pid))["lastInvitation"]["deliveryStatus"] == "QUEUED"
    # and running again before the backoff sends nothing
    del mailbox.refuse[EMAIL]
    await api.deliver()
    assert mailbox.messages == []

    # when the backoff has passed and the server accepts
    with time_machine.travel(utcnow() + timedelta(seconds=BACKOFF_BASE_SECONDS + 1), tick=False):
        await api.deliver()

    # then the message arrives once and the invitation shows SENT
    [message] = mailbox.to(EMAIL)
    assert (await api.gql(TOKEN_INFO, {"token": token_from(message)}))["data"]["tokenInfo"] == {
        "valid": True,
        "error": None,
    }
    details = await patient(api, staff, pid)
    assert details["lastInvitation"]["deliveryStatus"] == "SENT"
    assert details["portalStatus"] == "INVITED"
    row = await OutboxMessage.get()
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.SENT, 1, None)


async def test_transient_failures_retry_until_the_give_up_age(
    api: Api, staff: Staff, mailbox: Mailbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # given the receiving server keeps answering "try later"
    mailbox.refuse[EMAIL] = "451 4.3.0 try later"
    pid = await invited(api, staff)
    start = utcnow()

    # when it is retried for almost three days (the default give-up age)
    for hours in (0, 1, 6, 24, 48, 71.9):
        with time_machine.travel(start + timedelta(hours=hours), tick=False):
            await api.deliver()
    # then the message is still waiting and its link is still good
    row = await OutboxMessage.get()
    assert row.status is OutboxStatus.PENDING and row.attempts == 6
    assert (await patient(api, staff, pid))["lastInvitation"]["deliveryStatus"] == "QUEUED"

    # when the next attempt comes after three days
    with time_machine.travel(start + timedelta(hours=73), tick=False):
        await api.deliver()
    # then it is given up with a reason that says why, and the link dies with it
    row = await OutboxMessage.get()
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 7)
    assert row.last_error == "gave up after 72 h of transient failures; last: 451 4.3.0 try later"
    assert row.params == {}
    details = await patient(api, staff, pid)
    assert details["lastInvitation"]["deliveryStatus"] == "FAILED"
    assert details["portalStatus"] == "INVITATION_EXPIRED"
    assert mailbox.messages == []
    # and every failure was a warning line with the reason, never the address or link
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "mail.delivery_failed" in ln]
    assert len(lines) == 7
    assert all("warning" in ln and "451 4.3.0 try later" in ln for ln in lines)
    assert "outcome=failed" in lines[-1] and "gave up after 72 h" in lines[-1]
    assert not any(EMAIL in ln or "token" in ln for ln in lines)


async def test_an_smtp_outage_is_not_a_bounce(
    api: Api, staff: Staff, mailbox: Mailbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """Why 3: an SMTP server that never answers, for longer than the old retry window,
    turned every queued invitation into FAILED with its link revoked."""
    pid = await invited(api, staff)
    down = api.settings.model_copy(update={"smtp_port": free_port()})
    dispatcher = Dispatcher(down, on_outcome=record_delivery_outcome)
    start = utcnow()
    # when the server is down for two days of retries
    for hours in (0, 0.5, 1, 2, 4, 8, 16, 24, 36, 47):
        with time_machine.travel(start + timedelta(hours=hours), tick=False):
            await dispatcher.drain()
    # then nothing was given up: the invitation still waits, its link still opens
    row = await OutboxMessage.get()
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 10)
    assert (
        row.last_error == "cannot open an SMTP session: connection refused (ConnectionRefusedError)"
    )
    details = await patient(api, staff, pid)
    assert details["lastInvitation"]["deliveryStatus"] == "QUEUED"
    assert details["portalStatus"] == "INVITED"
    assert "connection refused" in capsys.readouterr().err
    # and once the server is back the message goes out
    with time_machine.travel(start + timedelta(hours=48), tick=False):
        await api.deliver()
    assert len(mailbox.to(EMAIL)) == 1
    assert (await patient(api, staff, pid))["lastInvitation"]["deliveryStatus"] == "SENT"


async def test_a_silent_smtp_server_times_out_as_transient(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given a server that accepts TCP connections and never says a word
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        await invited(api, staff)
        silent = api.settings.model_copy(
            update={"smtp_port": listener.getsockname()[1], "smtp_timeout_seconds": 0.3}
        )
        stats = await Dispatcher(silent, on_outcome=record_delivery_outcome).run_once()
    finally:
        listener.close()
    # then the message waits for a retry, with a reason that says what happened
    assert (stats.sent, stats.retried, stats.failed) == (0, 1, 0)
    row = await OutboxMessage.get()
    assert row.status is OutboxStatus.PENDING
    assert row.last_error is not None and "timed out" in row.last_error


async def test_backoff_doubles(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    mailbox.refuse[EMAIL] = "451 4.3.0 try later"
    await invited(api, staff)
    start = utcnow()

    with time_machine.travel(start, tick=False) as traveller:
        await api.deliver()
        first = (await OutboxMessage.get()).next_attempt_at
        assert first == start + timedelta(seconds=BACKOFF_BASE_SECONDS)
        traveller.shift(timedelta(seconds=BACKOFF_BASE_SECONDS))
        await api.deliver()
        second = (await OutboxMessage.get()).next_attempt_at
        assert second == first + timedelta(seconds=2 * BACKOFF_BASE_SECONDS)
    assert (await OutboxMessage.get()).attempts == 2


# --- permanent failure ---------------------------------------------------------------


async def test_permanent_failure_revokes_the_link(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    # given the address does not exist
    mailbox.refuse[EMAIL] = "550 5.1.1 no such user"
    pid = await invited(api, staff)
    link = await LinkToken.get(patient_id=pk(pid))

    # when the dispatcher runs
    await api.deliver()

    # then delivery failed for good, with the server's reply
    row = await OutboxMessage.get()
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 1)
    assert row.last_error == "permanent SMTP reply: 550 5.1.1 no such user"
    await link.refresh_from_db()
    assert link.delivery_status.value == "FAILED"
    assert link.delivery_detail == "permanent SMTP reply: 550 5.1.1 no such user"
    assert link.revoked_at is not None
    # and the Onboarding Tool shows it
    details = await patient(api, staff, pid)
    assert details["lastInvitation"]["deliveryStatus"] == "FAILED"
    assert details["lastInvitation"]["revokedAt"] is not None
    assert details["portalStatus"] == "INVITATION_EXPIRED"
    # and the link that never arrived is dead: nothing retries it
    await api.deliver()
    assert mailbox.messages == []
    assert (await OutboxMessage.get()).attempts == 1


async def test_a_reply_that_quotes_the_address_is_kept_and_logged_without_it(
    api: Api,
    staff: Staff,
    mailbox: Mailbox,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Real servers quote the recipient ("550 5.1.1 <rosa@…>: Recipient address
    rejected"); the reason is stored on the link, shown to staff and logged, and none of
    them may carry the address (SECURITY: no addresses in logs)."""
    import logging

    caplog.set_level(logging.INFO)
    mailbox.refuse[EMAIL] = f"550 5.1.1 <{EMAIL.upper()}>: Recipient address rejected"
    pid = await invited(api, staff)

    await api.deliver()

    expected = "permanent SMTP reply: 550 5.1.1 <<recipient>>: Recipient address rejected"
    row = await OutboxMessage.get()
    assert row.last_error == expected
    link = await LinkToken.get(patient_id=pk(pid))
    assert link.delivery_detail == expected
    captured = capsys.readouterr()
    logged = captured.out + captured.err + "\n".join(r.getMessage() for r in caplog.records)
    assert "mail.delivery_failed" in logged
    assert EMAIL not in logged.lower()


async def test_permanently_failed_link_reads_invalid(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """The token of a message that never arrived, derived from the outbox row with the
    server secret before the dispatcher ran, must not open anything afterwards."""
    mailbox.refuse[EMAIL] = "550 5.1.1 no such user"
    await invited(api, staff)
    row = await OutboxMessage.get()
    token = LinkKeys.from_settings(api.settings).token_for(
        row.params["link_nonce"], row.params["link_digest"]
    )
    assert token

    await api.deliver()

    info = (await api.gql(TOKEN_INFO, {"token": token}))["data"]["tokenInfo"]
    assert info == {"valid": False, "error": "TOKEN_INVALID"}


async def test_one_refused_recipient_does_not_fail_the_batch(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    for n in (1, 2, 3):
        await enabled_patient(api, staff.token, n=n)
    ids = [str(i) for i in await _patient_ids()]
    mailbox.refuse["avery.quinn2@example.com"] = "550 5.1.1 no such user"

    result = await api.gql(SEND, {"ids": ids}, staff.token)
    assert [r["userErrors"] for r in result["data"]["sendInvitation"]["results"]] == [[], [], []]
    await api.deliver()

    assert sorted(m["To"] for m in mailbox.messages) == [
        "avery.quinn1@example.com",
        "avery.quinn3@example.com",
    ]
    statuses = {r.to_addr: r.status for r in await OutboxMessage.all()}
    assert statuses == {
        "avery.quinn1@example.com": OutboxStatus.SENT,
        "avery.quinn2@example.com": OutboxStatus.FAILED,
        "avery.quinn3@example.com": OutboxStatus.SENT,
    }
    assert 1 <= mailbox.connections <= 3  # at most one connection per message here


async def _patient_ids() -> list[int]:
    return list(await Patient.all().order_by("id").values_list("id", flat=True))


# --- scrubbing -----------------------------------------------------------------------


async def test_link_is_scrubbed_once_sent(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    await invited(api, staff)
    queued = await OutboxMessage.get()
    assert queued.params["link_nonce"]  # what the link is derived from at send time

    await api.deliver()

    sent = await OutboxMessage.get()
    assert sent.status is OutboxStatus.SENT
    assert sent.params == {}
    assert sent.sent_at is not None
    # the message itself carried both parts
    [message] = mailbox.to(EMAIL)
    types = [part.get_content_type() for part in message.walk()]
    assert "text/plain" in types and "text/html" in types
    html = next(p for p in message.walk() if p.get_content_type() == "text/html")
    assert f"#token={token_from(message)}" in html.get_payload(decode=True).decode()


async def test_link_is_scrubbed_after_a_permanent_failure(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    mailbox.refuse[EMAIL] = "550 5.1.1 no such user"
    await invited(api, staff)

    await api.deliver()

    failed = await OutboxMessage.get()
    assert failed.status is OutboxStatus.FAILED
    assert failed.params == {}


# --- connections ---------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"mail_connections": 1}])
async def test_one_smtp_connection_serves_a_batch(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    for n in range(1, 11):
        await enabled_patient(api, staff.token, n=n)
    ids = [str(i) for i in await _patient_ids()]
    await api.gql(SEND, {"ids": ids}, staff.token)

    await api.deliver()

    assert len(mailbox.messages) == 10
    assert mailbox.connections == 1


async def test_a_batch_is_split_over_parallel_connections(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given 10 queued messages and the default of 4 SMTP connections per dispatcher
    for n in range(1, 11):
        await enabled_patient(api, staff.token, n=n)
    ids = [str(i) for i in await _patient_ids()]
    await api.gql(SEND, {"ids": ids}, staff.token)
    # when one batch is sent
    await api.deliver()
    # then every message arrived once, over several connections (at most 4)
    assert sorted(m["To"] for m in mailbox.messages) == sorted(
        f"avery.quinn{n}@example.com" for n in range(1, 11)
    )
    assert 2 <= mailbox.connections <= 4


class LosesTheFirstClaimReply(Dispatcher):
    """A dispatcher whose first claim commits and then never hears so: the connection
    died between COMMIT and its reply (issue 12). The database and everything else are
    real; only what the dispatcher is told is cut."""

    lost = False

    async def _claim_rows(self, token: str, *, retry: bool) -> list[OutboxMessage]:
        rows = await super()._claim_rows(token, retry=retry)
        if not self.lost:
            self.lost = True
            raise ConnectionResetError("connection lost before the reply to COMMIT")
        return rows


async def test_a_claim_whose_commit_reply_was_lost_is_taken_back_at_once(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given three queued invitations
    for n in range(1, 4):
        await enabled_patient(api, staff.token, n=n)
    await api.gql(SEND, {"ids": [str(i) for i in await _patient_ids()]}, staff.token)
    dispatcher = LosesTheFirstClaimReply(api.settings, on_outcome=record_delivery_outcome)

    # when the dispatcher's claim commits but the reply is lost, and it tries again
    stats = await dispatcher.run_once()

    # then the retry found the rows its first try leased and sent them now, not after
    # the lease (5 minutes) ran out; each arrived once
    assert dispatcher.lost
    assert stats.sent == 3
    assert sorted(m["To"] for m in mailbox.messages) == [
        f"avery.quinn{n}@example.com" for n in range(1, 4)
    ]
    assert await OutboxMessage.filter(status=OutboxStatus.SENT).count() == 3


@pytest.mark.parametrize("settings_overrides", [{"mail_connections": 1}])
async def test_each_batch_opens_its_own_connection(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    for n in range(1, 6):
        await enabled_patient(api, staff.token, n=n)
    ids = [str(i) for i in await _patient_ids()]
    await api.gql(SEND, {"ids": ids}, staff.token)
    dispatcher = Dispatcher(api.settings, on_outcome=record_delivery_outcome, batch_size=2)

    stats = await dispatcher.drain()

    assert (stats.sent, stats.retried, stats.failed) == (5, 0, 0)
    assert len(mailbox.messages) == 5
    assert mailbox.connections == 3


async def test_unreachable_server_is_a_transient_failure(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    await invited(api, staff)
    unreachable = api.settings.model_copy(update={"smtp_port": free_port()})
    dispatcher = Dispatcher(unreachable, on_outcome=record_delivery_outcome)

    stats = await dispatcher.run_once()

    assert (stats.sent, stats.retried, stats.failed) == (0, 1, 0)
    row = await OutboxMessage.get()
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1)
    assert row.params["link_nonce"]  # kept for the retry


# --- file transport ------------------------------------------------------------------


def read_mailbox(directory: Path) -> list[Message]:
    return [email.message_from_bytes(f.read_bytes()) for f in sorted(directory.glob("*.eml"))]


async def test_file_transport_writes_one_eml_per_message(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, mail_dir=str(tmp_path / "outbox"))  # type: ignore[call-arg]
    transport = FileTransport(settings)

    results = []

    async def settle(i: int, result: Any) -> None:
        results.append(result)

    await transport.send(
        [
            Outgoing("a@example.com", "First", "text one https://x#token=abc", "<p>one</p>"),
            Outgoing("b@example.com", "Second", "text two", "<p>two</p>"),
        ],
        lambda: True,
        settle,
    )

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    messages = read_mailbox(tmp_path / "outbox")
    assert len(messages) == 2
    assert sorted(m["To"] for m in messages) == ["a@example.com", "b@example.com"]
    first = next(m for m in messages if m["To"] == "a@example.com")
    assert first["Subject"] == "First"
    assert first["From"] == settings.mail_from
    assert "https://x#token=abc" in body_text(first)
    assert first["Message-ID"] and first["Date"]
    # owner-only files, and nothing else left in the folder (no half-written message)
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}


def test_a_message_that_fails_to_write_leaves_no_file(tmp_path: Path) -> None:
    class Unwritable:  # not bytes: the write itself raises, after the file was opened
        pass

    with pytest.raises(TypeError):
        _write_private(tmp_path / "m.eml", Unwritable())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    _write_private(tmp_path / "m.eml", b"Subject: whole\r\n\r\nbody\r\n")
    assert [f.name for f in tmp_path.iterdir()] == ["m.eml"]
    assert (tmp_path / "m.eml").read_bytes().startswith(b"Subject: whole")


async def test_file_transport_through_the_dispatcher(
    api: Api, staff: Staff, mailbox: Mailbox, tmp_path: Path
) -> None:
    await invited(api, staff)
    settings = Settings(_env_file=None, mail_backend="file", mail_dir=str(tmp_path))  # type: ignore[call-arg]
    dispatcher = Dispatcher(
        settings, transport=FileTransport(settings), on_outcome=record_delivery_outcome
    )

    stats = await dispatcher.drain()

    assert stats.sent == 1
    [message] = read_mailbox(tmp_path)
    assert message["To"] == EMAIL
    token = token_from(message)
    assert (await api.gql(TOKEN_INFO, {"token": token}))["data"]["tokenInfo"]["valid"] is True
    assert mailbox.messages == []
    assert (await OutboxMessage.get()).params == {}


async def test_a_recipients_messages_arrive_in_order_across_parallel_connections(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given several patients, one of whom is sent three invitations before any delivery
    for n in range(1, 9):
        await enabled_patient(api, staff.token, n=n)
    ids = [str(i) for i in await _patient_ids()]
    await api.gql(SEND, {"ids": ids}, staff.token)
    await invite(api, staff.token, ids[0])
    await invite(api, staff.token, ids[0])
    # when one batch goes out over parallel connections
    await api.deliver()
    # then that patient's last message carries the only usable link
    tokens = [token_from(m) for m in mailbox.to(EMAIL)]
    assert len(tokens) == 3
    answers = [
        (await api.gql(TOKEN_INFO, {"token": t}))["data"]["tokenInfo"]["valid"] for t in tokens
    ]
    assert answers == [False, False, True]


# --- delivery outcomes go through the callback -----------------------------------------


async def test_outcomes_are_reported_through_the_callback_not_written_by_mail(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    # given three invitations: one accepted, one "try later", one "no such user"
    for n in (1, 2, 3):
        await enabled_patient(api, staff.token, n=n)
    ids = [str(i) for i in await _patient_ids()]
    await api.gql(SEND, {"ids": ids}, staff.token)
    mailbox.refuse["avery.quinn2@example.com"] = "451 4.3.0 try later"
    mailbox.refuse["avery.quinn3@example.com"] = "550 5.1.1 no such user"
    reports: list[tuple[int | None, str, str | None]] = []

    async def recording(**report: Any) -> None:
        reports.append((report["patient_id"], report["outcome"].value, report["reason"]))

    # when a dispatcher with a callback that writes nothing runs
    await Dispatcher(api.settings, on_outcome=recording).run_once()

    # then each outcome was reported with the server's reply as the reason
    assert sorted(reports, key=lambda r: r[0] or 0) == [
        (int(ids[0]), "delivered", None),
        (int(ids[1]), "retry", "451 4.3.0 try later"),
        (int(ids[2]), "failed", "permanent SMTP reply: 550 5.1.1 no such user"),
    ]
    # and the dispatcher itself left every link as it was: QUEUED, none revoked
    links = await LinkToken.all()
    assert {link.delivery_status.value for link in links} == {"QUEUED"}
    assert all(link.revoked_at is None for link in links)
