"""SPEC 9.2: every message id in the templates and subjects is in every shipped catalog,
translated, not fuzzy, with the same placeholders; no catalog keeps ids nothing uses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from mail import i18n

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@pytest.fixture(scope="module")
def message_ids(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The ids as `make catalogs` extracts them (same map, same keywords)."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    pybabel = Path(sys.executable).with_name("pybabel")
    subprocess.run(
        [
            str(pybabel),
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "N_",
            "--no-location",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    with pot.open("rb") as f:
        ids = {m.id for m in read_po(f) if m.id}
    assert len(ids) > 40  # the extraction found the templates
    return ids  # type: ignore[return-value]


@pytest.mark.parametrize(
    "language", [lang for lang in i18n.SHIPPED if lang != i18n.SOURCE_LANGUAGE]
)
def test_every_message_is_translated(language: str, message_ids: set[str]) -> None:
    with i18n.po_path(language).open("rb") as f:
        catalog = read_po(f, locale=language)
    entries = {m.id: m for m in catalog if m.id}
    missing = sorted(message_ids - entries.keys())
    assert not missing, f"{language} catalog misses: {missing} (run `make catalogs`)"
    untranslated = sorted(i for i in message_ids if not entries[i].string)
    assert not untranslated, f"{language} catalog leaves untranslated: {untranslated}"
    fuzzy = sorted(i for i in message_ids if entries[i].fuzzy)
    assert not fuzzy, f"{language} catalog has fuzzy entries: {fuzzy}"
    stale = sorted(entries.keys() - message_ids)
    assert not stale, f"{language} catalog keeps ids no template uses: {stale}"
    for message_id in message_ids:
        translated = entries[message_id].string
        assert isinstance(translated, str)
        assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(message_id)), (
            f"{language}: placeholders differ in {message_id!r}"
        )


def test_a_catalog_without_its_compiled_file_is_compiled_from_the_po(tmp_path: Path) -> None:
    # given the Spanish catalog with no .mo beside it (a fresh clone before `make`)
    target = tmp_path / "es" / "LC_MESSAGES"
    target.mkdir(parents=True)
    (target / "messages.po").write_bytes(i18n.po_path("es").read_bytes())
    original = i18n.LOCALE_DIR
    i18n.translations.cache_clear()
    try:
        i18n.LOCALE_DIR = tmp_path
        # when messages are translated, then the words are Spanish
        assert i18n.translations("es").gettext("Set up my account") == "Crear mi cuenta"
    finally:
        i18n.LOCALE_DIR = original
        i18n.translations.cache_clear()


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("es", "es"),
        ("es-MX", "es"),
        ("ES_419", "es"),
        ("en-GB", "en"),
        ("fr", "en"),
        ("", "en"),
        ("qq-not-a-tag", "en"),
    ],
)
def test_languages_fall_back_to_english(tag: str, language: str) -> None:
    assert i18n.language_for(tag) == language
