"""The wire form of a message: multipart/alternative, a plain-text and an HTML part.

This is a hot path: a bulk invitation sends 10,000 messages and Python's ``email``
package takes about 2 ms to build and flatten each one, which alone capped a mail worker
below 500 messages/s. The common case (ASCII addresses) is therefore written out
directly: fixed headers, bodies as they are when their lines fit (quoted-printable from
``binascii``, C code, when not), and an RFC 2047 subject cached per distinct subject (a
bulk send has one or two). Anything unusual, such as a non-ASCII address, still goes
through ``email.message.EmailMessage``.

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

# RFC 5322 2.1.1: at most 998 characters per line, the line break excluded. A body line
# that is longer goes quoted-printable (our templates never produce one).
MAX_LINE = 998


def message_bytes(
    *, sender: str, to_addr: str, subject: str, text: str, html: str, reply_to: str | None = None
) -> bytes:
    for value in (sender, to_addr, subject, reply_to or ""):
        if "\r" in value or "\n" in value:
            raise ValueError("header values may not contain CR or LF")
    if not (sender.isascii() and to_addr.isascii() and (reply_to or "").isascii()):
        return _with_email_package(sender, to_addr, subject, text, html, reply_to)
    # 96 random bits: no body can contain it by chance, and quoted-printable escapes
    # its leading "=".
    boundary = "==portal-" + secrets.token_hex(12)
    head = (
        f"From: {sender}\n"
        f"To: {to_addr}\n"
        + (f"Reply-To: {reply_to}\n" if reply_to else "")
        + f"Subject: {_subject(subject)}\n"
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
    head = f'--{boundary}\nContent-Type: text/{subtype}; charset="utf-8"\n'
    # The line break before the next boundary belongs to the boundary (RFC 2046 5.1.1),
    # so the body's own final newline, if any, is kept by adding one more.
    if "\r" not in body and _lines_fit(body):
        # As the email package does: text whose lines fit goes as it is (7bit, or 8bit
        # when it is not ASCII), so the link in a .eml file reads and greps as sent.
        cte = "7bit" if body.isascii() else "8bit"
        return f"{head}Content-Transfer-Encoding: {cte}\n\n{body}\n".encode()
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True)
    return f"{head}Content-Transfer-Encoding: quoted-printable\n\n".encode() + encoded + b"\n"


def _lines_fit(body: str) -> bool:
    if body.isascii():
        return max(map(len, body.split("\n"))) <= MAX_LINE
    return max(len(line.encode("utf-8")) for line in body.split("\n")) <= MAX_LINE


@lru_cache(maxsize=256)
def _subject(subject: str) -> str:
    if subject.isascii() and len(subject) <= 900:
        return subject
    # Encoded words, folded onto continuation lines (RFC 2047, 5322).
    return Header(subject, "utf-8", header_name="Subject").encode(linesep="\n")


def _with_email_package(
    sender: str, to_addr: str, subject: str, text: str, html: str, reply_to: str | None
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to_addr
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="portal.invalid")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()
