"""The hand-written MIME path (mail/mime.py) must read back, through the standard
library's parser, exactly as the email package would have written it."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

import pytest

from mail.mime import message_bytes

SENDER = "Patient Portal <no-reply@portal.invalid>"
AWKWARD_TEXT = (
    "Hello Zoë,\n"
    ".a line starting with a dot\n"
    "From the start of a line\n"
    "trailing spaces   \n"
    "tab\tinside and = signs == and =3D\n"
    + "long " * 60
    + "\n"
    + "https://portal.clinic.test/activate#token="
    + "A" * 43
    + "\n"
)
AWKWARD_HTML = '<p class="x">Zoë &amp; <a href="https://e/#token=abc">link</a></p>' * 20


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize(
    "subject",
    [
        "Set up your Maple Street Clinic patient portal account",
        "Réinitialisez votre mot de passe, Clínica São Paulo " * 3,
    ],
)
def test_message_reads_back_exactly(subject: str) -> None:
    data = message_bytes(
        sender=SENDER,
        to_addr="zoe@example.com",
        subject=subject,
        text=AWKWARD_TEXT,
        html=AWKWARD_HTML,
    )
    head, _, _ = data.partition(b"\n\n")
    assert head.isascii()
    assert max(len(line) for line in head.split(b"\n")) <= 78
    assert max(len(line) for line in data.split(b"\n")) <= 998
    # lines that fit go as they are: the link reads (and greps) as sent
    assert b"https://portal.clinic.test/activate#token=" + b"A" * 43 + b"\n" in data
    message = parse(data)
    assert message["Subject"] == subject
    assert message["To"] == "zoe@example.com"
    assert message["From"] == SENDER
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@portal.invalid>")
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content() == AWKWARD_TEXT
    assert html.get_content() == AWKWARD_HTML


@pytest.mark.parametrize("field", ["to_addr", "subject", "sender"])
@pytest.mark.parametrize("bad", ["\r\nBcc: attacker@evil.example", "\nX-Injected: 1", "\rX: 1"])
def test_line_breaks_in_header_values_are_refused(field: str, bad: str) -> None:
    values = {"sender": SENDER, "to_addr": "zoe@example.com", "subject": "Hello"}
    values[field] += bad
    with pytest.raises(ValueError):
        message_bytes(**values, text="body", html="<p>body</p>")


def test_non_ascii_address_takes_the_email_package_path() -> None:
    data = message_bytes(
        sender=SENDER, to_addr="zoë@exämple.com", subject="Hello", text="Hi\n", html="<p>Hi</p>\n"
    )
    message = parse(data)
    assert message["To"] == "zoë@exämple.com"
    plain = message.get_body(("plain",))
    assert plain is not None and plain.get_content() == "Hi\n"


def test_each_message_gets_its_own_boundary_and_message_id() -> None:
    a, b = (
        parse(
            message_bytes(sender=SENDER, to_addr="a@example.com", subject="S", text="t", html="h")
        )
        for _ in range(2)
    )
    assert a["Message-ID"] != b["Message-ID"]
    assert a.get_boundary() != b.get_boundary()
