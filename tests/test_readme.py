"""The README is part of the contract with operators: every setting is documented."""

import re
from pathlib import Path

from core.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = set(re.findall(r"^\| `(PORTAL_[A-Z_]+)` \|", README, flags=re.M))
    expected = {f"PORTAL_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_spec_variable_names_are_binding() -> None:
    for name in ("DATABASE_URL", "MAIL_BACKEND", "MAIL_DIR", "SMTP_HOST", "SMTP_PORT",
                 "MAIL_FROM", "LINK_BASE_URL", "REDIS_URL", "ENV"):
        assert name.lower() in Settings.model_fields
