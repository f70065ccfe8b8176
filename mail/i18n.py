"""Languages of messages (SPEC 9.2): gettext catalogs (Babel) loaded through Jinja2's i18n
extension, and dates written for the locale in the practice's time zone.

English is the source language: its "catalog" is the msgids themselves. Other shipped
languages have ``mail/locale/<lang>/LC_MESSAGES/messages.po`` (committed) and the ``.mo``
compiled from it by ``make install`` (``pybabel compile``). A checkout whose ``.mo`` is
missing or older than its ``.po`` (a fresh clone used without ``make``, an edited
catalog) compiles the ``.po`` in memory here instead, so a message is never sent from a
stale catalog.
"""

from __future__ import annotations

import gettext
from datetime import datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_timezone_name
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"
# The languages every message is written in; anything else falls back to English.
SHIPPED = ("en", "es")


def language_for(tag: str | None) -> str:
    """The shipped language nearest a BCP 47 tag: ``es-MX`` and ``es_419`` give ``es``,
    an unknown or unshipped language gives ``en``."""
    if not tag:
        return SOURCE_LANGUAGE
    try:
        language = Locale.parse(tag.replace("-", "_")).language
    except (ValueError, UnknownLocaleError):
        return SOURCE_LANGUAGE
    return language if language in SHIPPED else SOURCE_LANGUAGE


def normalise_tag(tag: str) -> str | None:
    """The canonical form of a BCP 47 tag (``ES-mx`` -> ``es-MX``), or None when Babel
    does not know the language."""
    try:
        locale = Locale.parse(tag.strip().replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return None
    return str(locale).replace("_", "-")


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> gettext.NullTranslations:
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    po = po_path(language)
    mo = po.with_suffix(".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as f:
            return Translations(f, domain=DOMAIN)
    with po.open("rb") as f:
        catalog = read_po(f, locale=language, domain=DOMAIN)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def moment_parts(moment: datetime, language: str, time_zone: str | None) -> tuple[str, str]:
    """A date and a time for the message's sentence ("on {date} at {time}"), written as
    the locale writes them, in the practice's time zone with the zone named."""
    local = moment.astimezone(zone(time_zone))
    date_text = format_date(local, format="long", locale=language)
    # CLDR puts a narrow no-break space before "AM"; a plain space keeps English mail
    # ASCII (7bit), as it was before catalogs.
    time_text = format_time(local, format="short", locale=language).replace("\u202f", " ")
    zone_name = get_timezone_name(local, width="short", locale=language)
    if any(c.isdigit() for c in zone_name):
        # The locale has no abbreviation for the zone ("-0500"): its long name reads
        # better ("hora estándar oriental").
        return date_text, f"{time_text} ({get_timezone_name(local, width='long', locale=language)})"
    return date_text, f"{time_text} {zone_name}"
