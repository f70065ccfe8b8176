"""Message composition: one Jinja2 template pair (plain text and HTML) per kind of mail.

Workflows queue a :class:`Draft` (the kind and its template variables) in the outbox;
the dispatcher calls :func:`render` when it sends the message.

The link is always built from ``PORTAL_LINK_BASE_URL`` with the token in the fragment,
never from request headers (SECURITY TOK-8, TOK-9)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import escape


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Draft:
    """A message as the outbox keeps it: its kind and the template variables, rendered
    only when the dispatcher sends it. A bulk invitation of 10,000 patients stores a few
    hundred bytes per message instead of two rendered bodies (about 6 kB)."""

    kind: str
    params: dict[str, Any]


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("mail", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def link_url(base_url: str, token: str) -> str:
    return f"{base_url}#token={token}"


def _when(moment: datetime) -> str:
    return moment.strftime("%B %d, %Y at %H:%M UTC")


def _render(template: str, subject: str, **context: Any) -> Rendered:
    env = _environment()
    context["subject"] = subject
    return Rendered(
        subject=subject,
        text=env.get_template(f"{template}.txt").render(**context),
        html=env.get_template(f"{template}.html").render(**context),
    )


# Placeholders that survive HTML escaping unchanged and cannot occur in real input
# (control characters are refused at every input).
_FIRST_NAME = "\x00first_name\x00"
_LINK = "\x00link\x00"


@lru_cache(maxsize=64)
def _invitation_skeleton(
    practice_name: str, expires_text: str, reset: bool, self_service: bool
) -> Rendered:
    """The invitation rendered once per variant; sending 10,000 invitations fills in two
    strings per patient instead of running the templates 20,000 times."""
    subject = (
        f"Reset your {practice_name} patient portal password"
        if reset
        else f"Set up your {practice_name} patient portal account"
    )
    return _render(
        "invitation",
        subject,
        practice_name=practice_name,
        first_name=_FIRST_NAME,
        link=_LINK,
        expires_text=expires_text,
        reset=reset,
        self_service=self_service,
    )


def _render_invitation(
    *,
    practice_name: str,
    first_name: str,
    link: str,
    expires_text: str,
    reset: bool,
    self_service: bool,
) -> Rendered:
    skeleton = _invitation_skeleton(practice_name, expires_text, reset, self_service)
    html_name, html_link = str(escape(first_name)), str(escape(link))
    return Rendered(
        subject=skeleton.subject,
        text=skeleton.text.replace(_FIRST_NAME, first_name).replace(_LINK, link),
        html=skeleton.html.replace(_FIRST_NAME, html_name).replace(_LINK, html_link),
    )


def _render_username_reminder(*, practice_name: str, first_name: str, username: str) -> Rendered:
    return _render(
        "username_reminder",
        f"Your {practice_name} patient portal username",
        practice_name=practice_name,
        first_name=first_name,
        username=username,
    )


def _render_password_changed(
    *, practice_name: str, first_name: str, how: str, when_text: str
) -> Rendered:
    return _render(
        "password_changed",
        f"Your {practice_name} patient portal password was changed",
        practice_name=practice_name,
        first_name=first_name,
        how=how,
        when_text=when_text,
    )


def _render_email_changed(*, practice_name: str, first_name: str, when_text: str) -> Rendered:
    return _render(
        "email_changed",
        f"The email address of your {practice_name} patient portal account was changed",
        practice_name=practice_name,
        first_name=first_name,
        when_text=when_text,
    )


_RENDERERS: dict[str, Callable[..., Rendered]] = {
    "invitation": _render_invitation,
    "self_service": _render_invitation,
    "username_reminder": _render_username_reminder,
    "password_changed": _render_password_changed,
    "email_changed": _render_email_changed,
}


def render(kind: str, params: Mapping[str, Any]) -> Rendered:
    """The message an outbox row stands for (called by the dispatcher at send time)."""
    return _RENDERERS[kind](**params)


# --- drafts: what the workflows queue ------------------------------------------------


def invitation(
    *,
    practice_name: str,
    first_name: str,
    link: str,
    expires_at: datetime,
    reset: bool,
    self_service: bool,
) -> Draft:
    return Draft(
        "self_service" if self_service else "invitation",
        {
            "practice_name": practice_name,
            "first_name": first_name,
            "link": link,
            "expires_text": f"on {_when(expires_at)}",
            "reset": reset,
            "self_service": self_service,
        },
    )


def username_reminder(*, practice_name: str, first_name: str, username: str) -> Draft:
    return Draft(
        "username_reminder",
        {"practice_name": practice_name, "first_name": first_name, "username": username},
    )


def password_changed(
    *, practice_name: str, first_name: str, by_staff: bool, when: datetime
) -> Draft:
    return Draft(
        "password_changed",
        {
            "practice_name": practice_name,
            "first_name": first_name,
            "how": "set by the clinic's staff" if by_staff else "changed",
            "when_text": _when(when),
        },
    )


def email_changed(*, practice_name: str, first_name: str, when: datetime) -> Draft:
    """Sent to the previous address; never names the new one (SECURITY NOTIF-1)."""
    return Draft(
        "email_changed",
        {"practice_name": practice_name, "first_name": first_name, "when_text": _when(when)},
    )
