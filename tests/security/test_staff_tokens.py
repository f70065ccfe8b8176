"""Issue 10, item 6 (staff tokens with a life cycle): expiry after
PORTAL_STAFF_TOKEN_TTL_DAYS, last use, revocation and rotation, through the API and the
`portal` commands an operator runs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from onboarding.admin import list_staff, revoke_staff, rotate_staff_token
from tests.conftest import Api, Staff

ROOT = Path(__file__).resolve().parents[2]
QUERY = "{ onboarding(first: 1) { totalCount } }"


async def code_for(api: Api, token: str) -> str | None:
    body = await api.gql(QUERY, token=token)
    if body.get("errors"):
        return str(body["errors"][0]["extensions"]["code"])
    assert body["data"]["onboarding"]["totalCount"] == 0
    return None


@pytest.mark.parametrize("settings_overrides", [{"staff_token_ttl_days": 30}])
async def test_staff_token_expires(api: Api, staff: Staff) -> None:
    assert await code_for(api, staff.token) is None
    later = datetime.now().astimezone()
    with time_machine.travel(later + timedelta(days=29, hours=23), tick=False):
        assert await code_for(api, staff.token) is None
    with time_machine.travel(later + timedelta(days=30, minutes=1), tick=False):
        assert await code_for(api, staff.token) == "UNAUTHENTICATED"


async def test_revoked_token_is_refused_at_once(api: Api, staff: Staff) -> None:
    assert await code_for(api, staff.token) is None
    await revoke_staff(staff.staff_id)
    assert await code_for(api, staff.token) == "UNAUTHENTICATED"


async def test_rotation_replaces_the_token(api: Api, staff: Staff) -> None:
    await revoke_staff(staff.staff_id)
    _, fresh = await rotate_staff_token(staff.staff_id)
    assert fresh != staff.token and fresh.startswith("stf_")
    assert await code_for(api, staff.token) == "UNAUTHENTICATED"
    assert await code_for(api, fresh) is None


async def test_last_use_is_recorded_once_a_minute(api: Api, staff: Staff) -> None:
    [before] = await list_staff(staff.practice_id)
    assert before.last_used_at is None
    await code_for(api, staff.token)
    [first] = await list_staff(staff.practice_id)
    assert first.last_used_at is not None
    await code_for(api, staff.token)
    [second] = await list_staff(staff.practice_id)
    assert second.last_used_at == first.last_used_at  # no write per request
    with time_machine.travel(datetime.now().astimezone() + timedelta(minutes=2), tick=False):
        await code_for(api, staff.token)
    [third] = await list_staff(staff.practice_id)
    assert third.last_used_at > first.last_used_at


def portal(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_DATABASE_URL"] = f"sqlite://{tmp_path}/cli.sqlite3"
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "portal_cli.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    return result


def test_operator_commands(tmp_path: Path) -> None:
    """list-staff shows state and last use (never a token or digest); revoke-staff and
    rotate-staff-token change what list-staff shows; unknown ids fail cleanly."""
    practice = portal(tmp_path, "create-practice", "--name", "Lakeside").stdout.split()[-1]
    token = portal(tmp_path, "create-staff", "--practice", practice, "--name", "Robin").stdout.split()[-1]
    listing = portal(tmp_path, "list-staff")
    assert listing.returncode == 0
    [header, row] = listing.stdout.strip().splitlines()
    assert header.split("\t")[:4] == ["id", "practice", "name", "state"]
    cells = row.split("\t")
    assert cells[2:4] == ["Robin", "active"] and cells[-1] == "never"
    assert token not in listing.stdout and "stf_" not in listing.stdout

    assert portal(tmp_path, "revoke-staff", "--id", cells[0]).returncode == 0
    assert portal(tmp_path, "list-staff").stdout.strip().splitlines()[1].split("\t")[3] == "revoked"

    rotated = portal(tmp_path, "rotate-staff-token", "--id", cells[0])
    assert rotated.returncode == 0
    new_token = rotated.stdout.strip().splitlines()[-1]
    assert new_token.startswith("stf_") and new_token != token
    assert portal(tmp_path, "list-staff").stdout.strip().splitlines()[1].split("\t")[3] == "active"

    for command in ("revoke-staff", "rotate-staff-token"):
        missing = portal(tmp_path, command, "--id", "999")
        assert missing.returncode == 2 and "no staff user with id 999" in missing.stderr
        assert "Traceback" not in missing.stderr
