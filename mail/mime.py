"""The wire form of a message: multipart/alternative, a plain-text and an HTML part.

This is a hot path: a bulk invitation sends 10,000 messages and Python's ``email``
package takes about 2 ms to build and flatten each one, which alone capped a mail worker
below 500 messages/s. The common case (ASCII addresses) is therefore written out
directly: fixed headers, quoted-printable bodies from ``binascii`` (C code), and an
RFC 2047 subject cached per distinct subject (a bulk send has one or two). Anything
unusual, such as a non-ASCII address, still goes through ``email.message.EmailMessage``.

Header injection is refused on both paths: a header value holding CR or LF raises
``ValueError``, as ``EmailMessage`` does.
"""

from __future__ import annotations

import binascii
import secrets
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import lru_cache


def message_bytes(*, sender: str, to_addr: str, subject: str, text: str, html: str) -> bytes:
    for value in (sender, to_addr, subject):
        if "\r" in value or "\n" in value:
            raise ValueError("header values may not contain CR or LF")
    if not (sender.isascii() and to_addr.isascii()):
        return _with_email_package(sender, to_addr, subject, text, html)
    # The boundary starts with "=", which quoted-printable always escapes, so it can
    # never occur inside a part.
    boundary = "==portal-" + secrets.token_hex(12)
    head = (
        f"From: {sender}\n"
        f"To: {to_addr}\n"
        f"Subject: {_subject(subject)}\n"
        f"Date: {formatdate(usegmt=True)}\n"
        f"Message-ID: {make_msgid(domain='portal.invalid')}\n"
        "Auto-Submitted: auto-generated\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/alternative;\n"
        f' boundary="{boundary}"\n'
        "\n"
    )
    return b"".join(
        (
            head.encode("ascii"),
            _part(boundary, "plain", text),
            _part(boundary, "html", html),
            f"--{boundary}--\n".encode("ascii"),
        )
    )


def _part(boundary: str, subtype: str, body: str) -> bytes:
    # The line break before the next boundary belongs to the boundary (RFC 2046 5.1.1),
    # so the body's own final newline, if any, is kept by adding one more.
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True) + b"\n"
    return (
        f"--{boundary}\n"
        f'Content-Type: text/{subtype}; charset="utf-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
    ).encode("ascii") + encoded


@lru_cache(maxsize=256)
def _subject(subject: str) -> str:
    if subject.isascii() and len(subject) <= 900:
        return subject
    # Encoded words, folded onto continuation lines (RFC 2047, 5322).
    return Header(subject, "utf-8", header_name="Subject").encode(linesep="\n")


def _with_email_package(sender: str, to_addr: str, subject: str, text: str, html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to_addr
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="portal.invalid")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()
