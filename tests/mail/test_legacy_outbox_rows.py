"""Outbox rows queued before the practice profile (migration 0013) still send after an
upgrade: the dispatcher renders them as the same message (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest

from mail import compose

OLD = {"practice_name": "Maple Street Clinic", "first_name": "Avery"}
CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    (
        "invitation",
        {
            **OLD,
            "link": "https://p.example/a#token=abc",
            "expires_text": "on December 05, 2026 at 14:30 UTC",
            "reset": False,
            "self_service": False,
        },
        "Set up",
        ["https://p.example/a#token=abc", "Avery", "2026"],
    ),
    (
        "self_service",
        {
            **OLD,
            "link": "https://p.example/a#token=xyz",
            "expires_text": "on January 02, 2027 at 09:05 UTC",
            "reset": True,
            "self_service": True,
        },
        "Reset",
        ["https://p.example/a#token=xyz", "2027"],
    ),
    ("username_reminder", {**OLD, "username": "avery.q"}, "username", ["avery.q"]),
    (
        "password_changed",
        {**OLD, "how": "changed", "when_text": "March 09, 2026 at 08:00 UTC"},
        "password",
        ["2026"],
    ),
    (
        "password_changed",
        {**OLD, "how": "set by the clinic's staff", "when_text": "March 09, 2026 at 08:00 UTC"},
        "password",
        ["Staff at", "temporary"],
    ),
    ("email_changed", {**OLD, "when_text": "March 09, 2026 at 08:00 UTC"}, "email", ["2026"]),
]


@pytest.mark.parametrize(("kind", "params", "subject_word", "body_words"), CASES)
def test_rows_queued_before_the_profile_render_as_the_same_message(
    kind: str, params: dict[str, Any], subject_word: str, body_words: list[str]
) -> None:
    rendered = compose.render(kind, params)
    assert "Maple Street Clinic" in rendered.subject
    assert subject_word.lower() in rendered.subject.lower()
    for word in [*body_words, "Avery"]:
        assert word in rendered.text, (word, rendered.text)
        assert word.replace("'", "&#39;") in rendered.html or word in rendered.html


def test_new_rows_are_left_as_they_are() -> None:
    params = {"clinic": {"name": "Maple"}, "lang": "es", "first_name": "A", "username": "u"}
    assert compose.upgrade_params("username_reminder", params) == ("username_reminder", params)
