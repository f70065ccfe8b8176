"""SPEC 9.4: every message, in every shipped language, as the patient reads it.

``tests/mail/snapshots/<language>/`` holds each rendered message (``.txt`` and ``.html``
for email, ``.sms.txt`` for a text), so wording is reviewed by reading files, and a
change to any template, catalog or date format shows up in a diff. After a deliberate
change: ``UPDATE_SNAPSHOTS=1 pytest tests/mail/test_message_snapshots.py`` and review
the diff. The test also checks what every message must carry: the clinic's name and
phone (and, for email, the Reply-To), and a text's length."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mail import compose, i18n
from mail.sms import gsm7_length

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"

CLINIC = {
    "name": "Maple Street Clinic",
    "phone": "(617) 555-0142",
    "website": "https://maple-street.example",
    "reply_to": "front.desk@maple-street.example",
    "sender": "Maple Street Front Desk",
    "tz": "America/New_York",
}
LINK = "https://portal.clinic.example/activate#token=" + "T" * 43
# 15:30 UTC in January: 10:30 in New York (EST), so the time zone conversion shows.
MOMENT = datetime(2027, 1, 14, 15, 30, tzinfo=UTC).isoformat()


def cases() -> list[tuple[str, str, dict[str, Any]]]:
    base = {"clinic": CLINIC, "first_name": "Rosa"}
    out: list[tuple[str, str, dict[str, Any]]] = []
    for variant in compose.INVITATION_VARIANTS:
        kind = "self_service" if variant.startswith("self") else "invitation"
        params = {**base, "link": LINK, "expires_at": MOMENT, "variant": variant}
        out.append((f"invitation-{variant}", kind, params))
    for kind in compose.NOTICE_KINDS:
        params = {**base, "when": MOMENT}
        if kind in ("username_changed", "username_reminder"):
            params["username"] = "rosa.diaz"
        if kind == "username_reminder":
            del params["when"]
        out.append((kind, kind, params))
    return out


CASES = cases()


def check(path: Path, rendered: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_SNAPSHOTS=1 and review it"
    assert rendered == path.read_text(encoding="utf-8"), f"{path} differs from the rendering"


@pytest.mark.parametrize("language", i18n.SHIPPED)
@pytest.mark.parametrize(("name", "kind", "params"), CASES, ids=[c[0] for c in CASES])
def test_every_message_in_every_language(
    language: str, name: str, kind: str, params: dict[str, Any]
) -> None:
    params = {**params, "lang": language}
    email = compose.render(kind, params)
    text = compose.render(kind, params, compose.SMS)

    # what every message carries (SPEC 9.1)
    assert email.reply_to == CLINIC["reply_to"] and email.sender_name == CLINIC["sender"]
    assert CLINIC["name"] in email.subject
    for body in (email.text, email.html, text.text):
        assert CLINIC["name"] in body and CLINIC["phone"] in body
    if "link" in params:
        assert LINK in email.text and LINK in text.text
    if "when" in params or "expires_at" in params:
        # the clinic's local time, written for the locale
        assert ("10:30 AM EST" if language == "en" else "10:30") in email.text
    # a text fits one GSM-7 segment with this clinic and link (SPEC 9.3)
    assert gsm7_length(text.text) is not None, text.text
    assert gsm7_length(text.text) <= 160, (len(text.text), text.text)

    folder = SNAPSHOTS / language
    check(folder / f"{name}.txt", f"Subject: {email.subject}\n\n{email.text}")
    check(folder / f"{name}.html", email.html)
    check(folder / f"{name}.sms.txt", text.text + "\n")


def test_subjects_differ_for_every_moment() -> None:
    """A first set-up, a reset, a reminder and a staff-set password each say their own
    thing (SPEC 9.4)."""
    for language in i18n.SHIPPED:
        subjects = [
            compose.render(kind, {**params, "lang": language}).subject for _, kind, params in CASES
        ]
        # the two reset variants (staff-sent, self-service) share "Reset your … password"
        assert len(set(subjects)) == len(subjects) - 1, subjects


def test_the_readme_points_to_the_snapshots() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "tests/mail/snapshots/" in readme
