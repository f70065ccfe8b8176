"""The demo's charts are inserted without the API's validation, so each value must be
one the API itself would accept (a surname with spaces once made addresses that
aiosmtplib refused when the demo's invitations were sent)."""

from __future__ import annotations

from onboarding.demo import generate_patients
from onboarding.validation import check_email


def test_every_demo_address_is_one_the_api_accepts() -> None:
    patients = generate_patients(1, 3000, seed=7)
    addresses = [p.email for p in patients if p.email]
    assert any("vanderberg" in a for a in addresses)  # the surname with spaces was drawn
    for address in addresses:
        cleaned, problem = check_email("email", address)
        assert problem is None and cleaned == address, (address, problem)
