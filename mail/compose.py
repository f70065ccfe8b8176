"""Message composition: Jinja2 templates (plain text and HTML twins for email, one short
text for SMS) per kind of message, in the patient's language (``mail/i18n.py``) and in
the clinic's name, phone number and time zone (SPEC 9).

Workflows queue a :class:`Draft` (the kind and its template variables) in the outbox;
the dispatcher calls :func:`render` when it sends the message. The variables carry the
clinic's profile as it was when the message was queued, so a message already on its way
is not rewritten by a later profile edit, and the dispatcher reads no other table.

The link is always built from ``PORTAL_LINK_BASE_URL`` with the token in the fragment,
never from request headers (SECURITY TOK-8, TOK-9). A draft never holds the link itself:
it holds a :class:`LinkRef` (the base URL, the link's nonce and digest) and the
dispatcher derives the token at send time (``core.link_keys``), so a queued message in a
database dump is no usable link."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import phonenumbers
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import escape

from mail import i18n
from models import Patient, Practice

EMAIL = "email"
SMS = "sms"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    reply_to: str | None = None
    sender_name: str | None = None


@dataclass(frozen=True)
class Draft:
    """A message as the outbox keeps it: its kind and the template variables, rendered
    only when the dispatcher sends it. A bulk invitation of 10,000 patients stores a few
    hundred bytes per message instead of two rendered bodies (about 6 kB)."""

    kind: str
    params: dict[str, Any]


def N_(message: str) -> str:  # noqa: N802 (the gettext convention for "mark, translate later")
    return message


# Subjects, one per moment (SPEC 9.4). Translated at render time; extracted by pybabel
# through the N_ keyword.
SUBJECTS = {
    "setup": N_("Welcome to the %(clinic)s patient portal: set up your account"),
    "reset": N_("Reset your %(clinic)s patient portal password"),
    "self_setup": N_("Set up your %(clinic)s patient portal account"),
    "self_reset": N_("Reset your %(clinic)s patient portal password"),
    "reminder_setup": N_("Your %(clinic)s patient portal link expires soon"),
    "reminder_reset": N_("Your %(clinic)s password reset link expires soon"),
    "account_ready": N_("Your %(clinic)s patient portal account is ready"),
    "password_changed": N_("Your %(clinic)s patient portal password was changed"),
    "password_set_by_staff": N_("Your clinic set a password for your %(clinic)s patient portal"),
    "username_changed": N_("Your %(clinic)s patient portal username was changed"),
    "username_reminder": N_("Your %(clinic)s patient portal username"),
    "email_changed": N_("The email address of your %(clinic)s patient portal account was changed"),
}

INVITATION_VARIANTS = (
    "setup",
    "reset",
    "self_setup",
    "self_reset",
    "reminder_setup",
    "reminder_reset",
)
NOTICE_KINDS = (
    "account_ready",
    "password_changed",
    "password_set_by_staff",
    "username_changed",
    "username_reminder",
    "email_changed",
)


@lru_cache(maxsize=8)
def _environment(language: str) -> Environment:
    env = Environment(
        loader=PackageLoader("mail", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


def display_phone(e164: str | None) -> str | None:
    """How a clinic's number is written in a message: national form ("(617) 555-0100")."""
    if not e164:
        return None
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


def clinic(practice: Practice) -> dict[str, Any]:
    """The practice profile as messages use it (stored with each queued message)."""
    return {
        "name": practice.name,
        "phone": display_phone(practice.phone),
        "website": practice.website,
        "reply_to": practice.reply_to,
        "sender": practice.sender_name or practice.name,
        "tz": practice.time_zone,
    }


def link_url(base_url: str, token: str) -> str:
    return f"{base_url}#token={token}"


@dataclass(frozen=True)
class LinkRef:
    """What an outbox row keeps of a link: enough for the holder of the server secret to
    derive it (``nonce``), to tell which key made it (``digest``) and where it points."""

    base_url: str
    nonce: str
    digest: str


# The template variables a LinkRef is kept in; the dispatcher turns them into "link".
LINK_BASE, LINK_NONCE, LINK_DIGEST = "link_base", "link_nonce", "link_digest"


def _context(params: Mapping[str, Any], language: str) -> dict[str, Any]:
    profile = params["clinic"]
    phone = profile.get("phone")
    return {
        "clinic": profile["name"],
        "phone": phone,
        "website": profile.get("website"),
        "language": language,
        # Texts open with the clinic and its number: the fewest characters that name
        # both, so the rest of a 160-character segment is left for the link.
        "who": f"{profile['name']} {phone}" if phone else profile["name"],
    }


def _when(params: Mapping[str, Any], key: str, language: str) -> tuple[str, str]:
    moment = datetime.fromisoformat(params[key])
    return i18n.moment_parts(moment, language, params["clinic"].get("tz"))


def _subject(subject_key: str, clinic_name: str, language: str) -> str:
    return i18n.translations(language).gettext(SUBJECTS[subject_key]) % {"clinic": clinic_name}


def _render(
    template: str, subject_key: str, params: Mapping[str, Any], channel: str, **extra: Any
) -> Rendered:
    language = i18n.language_for(params.get("lang"))
    env = _environment(language)
    context = _context(params, language)
    context.update(extra)
    subject = _subject(subject_key, context["clinic"], language)
    context["subject"] = subject
    profile = params["clinic"]
    if channel == SMS:
        text = env.get_template(f"sms/{template}.txt").render(**context).strip()
        return Rendered(subject=subject, text=text, html="")
    return Rendered(
        subject=subject,
        text=env.get_template(f"{template}.txt").render(**context),
        html=env.get_template(f"{template}.html").render(**context),
        reply_to=profile.get("reply_to"),
        sender_name=profile.get("sender"),
    )


# Placeholders that survive HTML escaping unchanged and cannot occur in real input
# (control characters are refused at every input).
_FIRST_NAME = "\x00first_name\x00"
_LINK = "\x00link\x00"


@lru_cache(maxsize=64)
def _invitation_skeleton(
    clinic_items: tuple[tuple[str, Any], ...], lang: str, variant: str, expires: str, channel: str
) -> Rendered:
    """The invitation rendered once per variant; sending 10,000 invitations fills in two
    strings per patient instead of running the templates 20,000 times."""
    params = {"clinic": dict(clinic_items), "lang": lang, "expires_at": expires}
    language = i18n.language_for(lang)
    date_text, time_text = _when(params, "expires_at", language)
    return _render(
        "invitation",
        variant,
        params,
        channel,
        first_name=_FIRST_NAME,
        link=_LINK,
        variant=variant,
        expires_date=date_text,
        expires_time=time_text,
    )


def _render_invitation(params: Mapping[str, Any], channel: str) -> Rendered:
    skeleton = _invitation_skeleton(
        tuple(sorted(params["clinic"].items())),
        params.get("lang") or "en",
        params["variant"],
        params["expires_at"],
        channel,
    )
    first_name, link = params["first_name"], params["link"]
    html_name, html_link = str(escape(first_name)), str(escape(link))
    return Rendered(
        subject=skeleton.subject,
        text=skeleton.text.replace(_FIRST_NAME, first_name).replace(_LINK, link),
        html=skeleton.html.replace(_FIRST_NAME, html_name).replace(_LINK, html_link),
        reply_to=skeleton.reply_to,
        sender_name=skeleton.sender_name,
    )


def _render_notice(kind: str, params: Mapping[str, Any], channel: str) -> Rendered:
    language = i18n.language_for(params.get("lang"))
    extra: dict[str, Any] = {"first_name": params["first_name"]}
    if "when" in params:
        extra["when_date"], extra["when_time"] = _when(params, "when", language)
    if "username" in params:
        extra["username"] = params["username"]
    return _render(kind, kind, params, channel, **extra)


_LEGACY_WHEN = "%B %d, %Y at %H:%M UTC"


def _legacy_moment(text: str) -> str:
    moment = datetime.strptime(text.removeprefix("on "), _LEGACY_WHEN)
    return moment.replace(tzinfo=UTC).isoformat()


def upgrade_params(kind: str, params: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Rows queued before the practice profile (migration 0013) hold ``practice_name``
    and pre-formatted English times; a deploy must not strand them in the outbox, so
    they are read as the same message in the clinic's default language. (Invitations
    among them also hold a raw link: migration 0015 fails those closed, and the
    dispatcher never sends a raw link, so in practice only notices get here.)"""
    if "clinic" in params:
        return kind, params
    new: dict[str, Any] = {
        "clinic": {"name": params["practice_name"]},
        "lang": None,
        "first_name": params["first_name"],
    }
    if kind in ("invitation", "self_service"):
        new["link"] = params["link"]
        new["expires_at"] = _legacy_moment(params["expires_text"])
        new["variant"] = invitation_variant(
            reset=bool(params["reset"]), self_service=bool(params["self_service"]), reminder=False
        )
    elif kind == "username_reminder":
        new["username"] = params["username"]
    else:  # password_changed, email_changed
        new["when"] = _legacy_moment(params["when_text"])
        if kind == "password_changed" and str(params.get("how", "")).startswith("set by"):
            kind = "password_set_by_staff"
    return kind, new


def render(kind: str, params: Mapping[str, Any], channel: str = EMAIL) -> Rendered:
    """The message an outbox row stands for (called by the dispatcher at send time)."""
    kind, params = upgrade_params(kind, params)
    if kind in ("invitation", "self_service"):
        return _render_invitation(params, channel)
    return _render_notice(kind, params, channel)


# --- drafts: what the workflows queue ------------------------------------------------


def _base(
    practice: Practice, patient: Patient, profile: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "clinic": profile if profile is not None else clinic(practice),
        "lang": patient.preferred_language,
        "first_name": patient.first_name,
    }


def invitation_variant(*, reset: bool, self_service: bool, reminder: bool) -> str:
    if reminder:
        return "reminder_reset" if reset else "reminder_setup"
    if self_service:
        return "self_reset" if reset else "self_setup"
    return "reset" if reset else "setup"


def invitation(
    practice: Practice,
    patient: Patient,
    *,
    link: LinkRef,
    expires_at: datetime,
    reset: bool,
    self_service: bool,
    reminder: bool = False,
    profile: dict[str, Any] | None = None,
) -> Draft:
    """``profile``: ``clinic(practice)`` computed once by a caller composing many (a
    bulk invitation would otherwise parse the clinic's phone number 10,000 times)."""
    params = _base(practice, patient, profile)
    params.update(
        {LINK_BASE: link.base_url, LINK_NONCE: link.nonce, LINK_DIGEST: link.digest},
        expires_at=expires_at.isoformat(),
        variant=invitation_variant(reset=reset, self_service=self_service, reminder=reminder),
    )
    return Draft("self_service" if self_service else "invitation", params)


def username_reminder(practice: Practice, patient: Patient, *, username: str) -> Draft:
    return Draft("username_reminder", {**_base(practice, patient), "username": username})


def password_notice(
    practice: Practice, patient: Patient, *, kind: str, when: datetime, username: str | None = None
) -> Draft:
    """``account_ready`` (the patient chose their first password), ``password_changed``
    (the patient changed or reset it), ``password_set_by_staff`` or ``username_changed``
    (staff changed the username alone)."""
    assert kind in (
        "account_ready",
        "password_changed",
        "password_set_by_staff",
        "username_changed",
    )
    params = {**_base(practice, patient), "when": when.isoformat()}
    if username is not None:
        params["username"] = username
    return Draft(kind, params)


def email_changed(practice: Practice, patient: Patient, *, when: datetime) -> Draft:
    """Sent to the previous address; never names the new one (SECURITY NOTIF-1)."""
    return Draft("email_changed", {**_base(practice, patient), "when": when.isoformat()})
