"""The first hour, as a new user follows the README (issue 12 item 6): `make run PORT=…`
mails links to that port, `.demo-token` always belongs to the database in use and is
never kept from a failed demo, the CLI help is plain. Runs `make run` for real in a
scratch directory (the worktree's venv), once: it does not depend on the test database."""

from __future__ import annotations

import email
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BACKEND, body_text, free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="backend-independent; runs once")


def make_run(workdir: Path, port: int, database_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_DATABASE_URL"] = database_url
    env["PORTAL_MAIL_DIR"] = str(workdir / "mail-outbox")
    with (workdir / f"run-{port}.log").open("wb") as log:
        return subprocess.Popen(
            ["make", "-f", str(ROOT / "Makefile"), "run", f"PORT={port}", f"VENV={ROOT / '.venv'}"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def wait_ready(port: int, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"make run exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server never became ready")


def staff_count(port: int, token: str) -> int:
    answer = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": "{ onboarding(first: 1) { totalCount } }"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    return int(answer["data"]["onboarding"]["totalCount"])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    # `make` checks the venv stamp against pyproject.toml in its working directory
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_make_run_port_demo_token_and_links(workdir: Path) -> None:
    port = free_port()
    first_db = f"sqlite://{workdir}/first.sqlite3"
    proc = make_run(workdir, port, first_db)
    try:
        wait_ready(port, proc)
        token = (workdir / ".demo-token").read_text().strip()
        assert token.startswith("stf_")
        assert staff_count(port, token) == 300
        # the demo's invitations went out (in-server dispatcher) with links to this port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list((workdir / "mail-outbox").glob("*.eml")):
            time.sleep(0.3)
        mail = email.message_from_bytes(next((workdir / "mail-outbox").glob("*.eml")).read_bytes())
        assert f"http://localhost:{port}/portal/activate#token=" in body_text(mail)
    finally:
        stop(proc)

    # when the same directory is switched to another database
    port2 = free_port()
    proc = make_run(workdir, port2, f"sqlite://{workdir}/second.sqlite3")
    try:
        wait_ready(port2, proc)
        second = (workdir / ".demo-token").read_text().strip()
        # then a token for that database was made, and the server accepts it
        assert second != token
        assert staff_count(port2, second) == 300
    finally:
        stop(proc)

    # when the demo cannot be made (an unreachable database), no token is kept
    proc = make_run(workdir, free_port(), f"postgres://nobody@127.0.0.1:{free_port()}/nowhere")
    proc.wait(120)
    assert proc.returncode != 0
    assert not (workdir / ".demo-token").exists()
    # and the next run with a working database makes one again
    port3 = free_port()
    proc = make_run(workdir, port3, first_db)
    try:
        wait_ready(port3, proc)
        again = (workdir / ".demo-token").read_text().strip()
        assert again.startswith("stf_") and staff_count(port3, again) >= 300
    finally:
        stop(proc)


def test_cli_help_is_plain(tmp_path: Path) -> None:
    for args in (["--help"], ["serve", "--help"], ["mail-worker", "--help"]):
        out = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "portal"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "<bool>" not in out and "<str>" not in out and "<int>" not in out
        assert "╭" not in out
        # no command summary is cut mid-sentence across lines
        assert "(production runs\n" not in out
