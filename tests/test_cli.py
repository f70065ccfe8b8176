"""The `portal` console script on an empty database, as an operator runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def portal(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_DATABASE_URL"] = f"sqlite://{tmp_path}/cli.sqlite3"
    env["PORTAL_MAIL_DIR"] = str(tmp_path / "mail")
    result = subprocess.run(
        [sys.executable, str(ROOT / "portal_cli.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_create_practice_then_staff_prints_id_and_token(tmp_path: Path) -> None:
    # given an empty database; when a practice and a staff user are created
    practice = portal(tmp_path, "create-practice", "--name", "Lakeside Pediatrics")
    practice_id = practice.stdout.strip().splitlines()[-1]
    staff = portal(tmp_path, "create-staff", "--practice", practice_id, "--name", "Robin")
    token = staff.stdout.strip().splitlines()[-1]
    # then the last lines are the id and a token, and only its digest is stored
    assert practice_id.isdigit()
    assert token.startswith("stf_") and len(token) > 40
    import sqlite3

    db = sqlite3.connect(tmp_path / "cli.sqlite3")
    rows = db.execute("SELECT token_digest FROM staff_user").fetchall()
    assert len(rows) == 1 and len(rows[0][0]) == 64 and token not in rows[0][0]


def test_create_staff_for_unknown_practice_fails_cleanly(tmp_path: Path) -> None:
    result = portal(tmp_path, "create-staff", "--practice", "999", "--name", "X", check=False)
    assert result.returncode == 2
    assert "no practice with id 999" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_and_demo_on_an_empty_database(tmp_path: Path) -> None:
    assert "up to date" in portal(tmp_path, "migrate").stdout
    demo = portal(tmp_path, "demo", "--patients", "60")
    assert demo.stdout.strip().splitlines()[-1].startswith("stf_")
    # the demo's invitations went through the outbox; a one-shot worker delivers them
    worker = portal(tmp_path, "mail-worker", "--once")
    sent = int(worker.stdout.split()[1].rstrip(","))
    assert sent > 0
    assert len(list((tmp_path / "mail").glob("*.eml"))) == sent


@pytest.mark.parametrize("args", [["serve", "--help"], ["--help"]])
def test_help(tmp_path: Path, args: list[str]) -> None:
    assert "Usage" in portal(tmp_path, *args).stdout


def test_files_the_service_creates_are_owner_only(tmp_path: Path) -> None:
    """Issue 10: under the usual umask (022) the database, the mail folder and its
    messages were world-readable; the service makes them owner-only."""
    import stat

    old = os.umask(0o022)
    try:
        portal(tmp_path, "demo", "--patients", "20")
        portal(tmp_path, "mail-worker", "--once")
    finally:
        os.umask(old)
    created = [p for p in tmp_path.iterdir() if p.name.startswith("cli.sqlite3")]
    created += [tmp_path / "mail", *(tmp_path / "mail").iterdir()]
    assert any(p.suffix == ".eml" for p in created) and len(created) >= 3
    for path in created:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path.name, oct(mode))


async def test_sqlite_runs_with_secure_delete(database: str) -> None:
    """Scrubbed rows are zeroed in the SQLite file, not left in free pages."""
    from tortoise import connections

    from models.database import connection_config

    config = connection_config("sqlite:///tmp/x.sqlite3")
    assert isinstance(config, dict) and config["credentials"]["secure_delete"] == "ON"
    if database == "sqlite":  # the suite's own connection was opened with it
        rows = await connections.get("default").execute_query_dict("PRAGMA secure_delete")
        assert int(rows[0]["secure_delete"]) == 1
