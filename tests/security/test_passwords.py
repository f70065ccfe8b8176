"""SECURITY.md sections PWD (password policy) and HASH (password storage)."""

from __future__ import annotations

import asyncio
import base64
import string
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from passlib.hash import argon2
from pydantic import ValidationError

import core.passwords
from core.passwords import PasswordProblem, password_problems, pwd_context
from core.settings import Settings
from graph.sdl import sdl
from tests.conftest import Api, Mailbox, Staff
from tests.helpers import STRONG_PASSWORD
from tests.security.support import (
    CHANGE_PASSWORD,
    SET_CREDENTIALS,
    HasherSpy,
    active_patient,
    codes,
    execute,
    invited,
    login,
    redeem,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]
OWASP_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


def problems(password: str, **context: Any) -> set[PasswordProblem]:
    context.setdefault("min_length", 12)
    return set(password_problems(password, **context))


async def stored_hash(username: str) -> str:
    rows = [r for r in await table_rows("portal_account") if r["username"] == username]
    return str(rows[0]["password_hash"])


# --- PWD ---------------------------------------------------------------------------


def test_minimum_length() -> None:
    """PWD-1: at least 12 characters by default (SPEC), configurable but never below 8."""
    assert Settings(_env_file=None).password_min_length == 12  # type: ignore[call-arg]
    assert PasswordProblem.TOO_SHORT in problems("violet-harb")  # 11
    assert problems("violet-harbo") == set()  # 12
    assert PasswordProblem.TOO_SHORT in problems("violet-harbor-tu", min_length=20)
    with pytest.raises(ValidationError):
        Settings(_env_file=None, password_min_length=7)  # type: ignore[call-arg]


async def test_short_password_is_refused_at_redemption(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """PWD-1: the rule is enforced by the service, with the reason."""
    _, token = await invited(api, staff.token, mailbox)
    refused = await redeem(api, token, "avery.q", "violet-harb")
    assert codes(refused) == ["PASSWORD_TOO_WEAK"]
    result = await api.gql(
        "mutation($i: RedeemTokenInput!) { redeemToken(input: $i) { userErrors { message } } }",
        {"i": {"token": token, "username": "avery.q", "password": "violet-harb"}},
    )
    assert "too short" in result["data"]["redeemToken"]["userErrors"][0]["message"]


def test_maximum_length_counts_code_points() -> None:
    """PWD-2: 64..128 characters are accepted, 129 refused; each Unicode code point counts
    once (128 emoji = 512 UTF-8 bytes is fine)."""
    base = "violet-harbor-tuesday-42-" * 6
    assert problems(base[:64]) == set()
    assert problems(base[:128]) == set()
    assert problems(base[:129]) == {PasswordProblem.TOO_LONG}
    emoji = "".join(chr(0x1F300 + i) for i in range(128))
    assert len(emoji.encode()) == 512
    assert problems(emoji) == set()
    assert problems(emoji + "x") == {PasswordProblem.TOO_LONG}


async def test_long_unicode_password_round_trips(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """PWD-2, PWD-4: a 128-code-point emoji password is set through a link and logs in."""
    emoji = "".join(chr(0x1F300 + i) for i in range(128))
    await active_patient(api, staff.token, mailbox, password=emoji)
    assert (await login(api, "patient1", emoji))["sessionToken"]
    assert (await login(api, "patient1", emoji[:127]))["sessionToken"] is None


async def test_no_truncation_or_modification(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """PWD-3: the password is verified exactly as received: no truncation (not at 72
    bytes, not at 127 chars), no case folding, no space collapsing. (Unicode forms are
    NFKC-normalised, NIST's SHOULD: test_password_forms.py; ASCII is unchanged by it.)"""
    password = "Violet Harbor  Tuesday " + "".join(string.ascii_letters[i % 52] for i in range(105))
    assert len(password) == 128
    await active_patient(api, staff.token, mailbox, password=password)
    for variant in (
        password[:72],
        password[:127],
        password.swapcase(),
        password.replace("  ", " "),
        password + " ",
    ):
        assert (await login(api, "patient1", variant))["sessionToken"] is None, variant
    assert (await login(api, "patient1", password))["sessionToken"]


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",  # lower-case words and spaces, no digits or symbols
        "".join(sorted(set(string.punctuation)))[:20] + "Ab1",  # printable ASCII symbols
        "montaña azul 🦊🌲 sobre el río",  # Unicode and emoji
        "ЗеленыйХолмУтром",  # non-Latin script, no digit, no symbol
    ],
    ids=["passphrase", "symbols", "emoji", "cyrillic"],
)
def test_any_characters_and_no_composition_rules(password: str) -> None:
    """PWD-4: printable ASCII, spaces and Unicode are accepted; no composition rules."""
    assert problems(password) == set()


async def test_no_periodic_rotation(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """PWD-4: a patient-chosen password never expires."""
    await active_patient(api, staff.token, mailbox)
    with time_machine.travel(datetime.now().astimezone() + timedelta(days=800), tick=False):
        result = await login(api, "patient1", STRONG_PASSWORD)
        assert result["sessionToken"] and result["mustChangePassword"] is False


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("password1234", PasswordProblem.COMMON),
        ("Password2024!", PasswordProblem.COMMON),
        ("!!dragon12345", PasswordProblem.COMMON),
        ("iloveyou1234", PasswordProblem.COMMON),
        ("aaaaaaaaaaaaaa", PasswordProblem.REPETITIVE),
        ("abcabcabcabc", PasswordProblem.REPETITIVE),
        ("abcdefghijklmn", PasswordProblem.SEQUENTIAL),
        ("123456789012", PasswordProblem.SEQUENTIAL),
        ("0987654321!!", PasswordProblem.SEQUENTIAL),
        ("qwertyuiopasdf", PasswordProblem.SEQUENTIAL),
        ("avery.quinn.42", PasswordProblem.EQUALS_USERNAME),
        ("Avery.Quinn.42-2024!", PasswordProblem.CONTEXT_WORD),
        ("PatientPortal2024", PasswordProblem.CONTEXT_WORD),
        ("x-avery.quinn1@example.com", PasswordProblem.CONTAINS_EMAIL),
    ],
)
def test_blocklist_and_context_words(password: str, problem: PasswordProblem) -> None:
    """PWD-5: common/breached values (and their affixed variants), repetitive and
    sequential strings, the username and its derivatives, the service name and the email
    are refused, each with its reason."""
    found = problems(password, username="avery.quinn.42", email="avery.quinn1@example.com")
    assert problem in found, found


def test_blocklist_size() -> None:
    """PWD-5: the shipped list holds at least ASVS 5.0's top 3000 (and is not excessive)."""
    assert 3000 <= len(core.passwords.common_passwords()) <= 100_000


async def test_weak_password_reason_reaches_the_client(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """PWD-5: the verifier says why it refused (NIST 63B §5.1.1.2)."""
    _, token = await invited(api, staff.token, mailbox)
    result = await api.gql(
        "mutation($i: RedeemTokenInput!) { redeemToken(input: $i) { userErrors { code message } } }",
        {"i": {"token": token, "username": "avery.q", "password": "password1234"}},
    )
    [error] = result["data"]["redeemToken"]["userErrors"]
    assert error["code"] == "PASSWORD_TOO_WEAK" and "common" in error["message"]


def test_no_hints_or_security_questions() -> None:
    """PWD-6: the schema offers no password hint or knowledge-based question."""
    text = sdl().lower()
    for word in ("hint", "securityquestion", "secretquestion", "securityanswer", "mothersmaiden"):
        assert word not in text.replace("_", ""), word


async def test_password_change_needs_the_current_password(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """PWD-7: changePassword verifies the current password; a link reset does not log the
    patient in (redeemToken returns no session)."""
    await active_patient(api, staff.token, mailbox)
    session = (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    wrong = await api.gql(
        CHANGE_PASSWORD, {"c": "not-the-password-at-all", "n": "a-brand-new-passphrase-9"}, session
    )
    assert codes(wrong["data"]["changePassword"]) == ["INVALID_CREDENTIALS"]
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]

    fields = await api.gql('{ __type(name: "RedeemTokenPayload") { fields { name } } }')
    names = {f["name"].lower() for f in fields["data"]["__type"]["fields"]}
    assert not any("session" in n or "token" in n for n in names), names


# --- HASH --------------------------------------------------------------------------


async def test_argon2id_at_owasp_parameters(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """HASH-1: stored hashes are argon2id, m=19456 KiB, t=2, p=1 (OWASP/ASVS minimum)."""
    await active_patient(api, staff.token, mailbox)
    assert (await stored_hash("patient1")).startswith(OWASP_PREFIX)
    assert pwd_context.hash("x").startswith(OWASP_PREFIX)


async def test_unique_salt_per_credential(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """HASH-2: every hash has its own random salt of >= 16 bytes (>= 32 bits required)."""
    await active_patient(api, staff.token, mailbox, n=1)
    await active_patient(api, staff.token, mailbox, n=2)
    first, second = await stored_hash("patient1"), await stored_hash("patient2")
    salts = [h.split("$")[4] for h in (first, second)]
    assert salts[0] != salts[1] and first != second
    for salt in salts:
        assert len(base64.b64decode(salt + "=" * (-len(salt) % 4))) >= 16


async def test_only_argon2_and_foreign_hashes_fail_safely(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """HASH-3: argon2id is the only scheme (no bcrypt/PBKDF2 legacy); a stored hash of
    another scheme or a corrupt one is a failed login, not a fault."""
    assert pwd_context.schemes() == ("argon2",)
    await active_patient(api, staff.token, mailbox)
    for foreign in (
        "$2b$12$C6UzMDM.H6dfI/f/IKxGhu1YYzQ4Z9t4SGdcPrbBvCCkWvhTt.Tz2",  # bcrypt
        "$pbkdf2-sha256$600000$c2FsdHNhbHQ$ZmFrZWZha2VmYWtlZmFrZQ",
        "not a hash at all",
    ):
        await execute("UPDATE portal_account SET password_hash = ?", foreign)
        result = await login(api, "patient1", STRONG_PASSWORD)
        assert result["sessionToken"] is None and codes(result) == ["INVALID_CREDENTIALS"]


def test_weaker_argon2_hashes_need_update() -> None:
    """HASH-4: hashes with lower memory or time cost are flagged for rehash."""
    weak_memory = argon2.using(type="ID", memory_cost=8192, rounds=2, parallelism=1).hash("x")
    weak_time = argon2.using(type="ID", memory_cost=19456, rounds=1, parallelism=1).hash("x")
    current = pwd_context.hash("x")
    assert pwd_context.needs_update(weak_memory)
    assert pwd_context.needs_update(weak_time)
    assert not pwd_context.needs_update(current)


async def test_rehash_on_login(api: Api, staff: Staff, mailbox: Mailbox) -> None:
    """HASH-4: a stored hash with old parameters (m=8192) is replaced by a current one on
    the next successful login."""
    await active_patient(api, staff.token, mailbox)
    old = argon2.using(type="ID", memory_cost=8192, rounds=2, parallelism=1).hash(STRONG_PASSWORD)
    assert old.startswith("$argon2id$v=19$m=8192,")
    await execute("UPDATE portal_account SET password_hash = ?", old)
    assert (await login(api, "patient1", "wrong-password-here"))["sessionToken"] is None
    assert await stored_hash("patient1") == old  # a failed login upgrades nothing
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]
    upgraded = await stored_hash("patient1")
    assert upgraded.startswith(OWASP_PREFIX) and upgraded != old
    assert (await login(api, "patient1", STRONG_PASSWORD))["sessionToken"]


def test_passlib_imports_without_deprecation_warnings() -> None:
    """HASH-4 (section c): libpass, not passlib 1.7.4: importing and hashing raise no
    DeprecationWarning (no `crypt`, no bcrypt `__about__`)."""
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-W",
            "error::DeprecationWarning",
            "-c",
            "import passlib.context, passlib.hash; passlib.hash.argon2.hash('x')",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


MEGABYTE = "p" * 1_000_000 + "-Violet-Harbor"


@pytest.mark.parametrize("settings_overrides", [{"max_body_bytes": 3_000_000}])
async def test_megabyte_password_is_refused_before_hashing(
    api: Api, staff: Staff, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HASH-5, PWD-2: with the body cap raised so a 1 MB password reaches the resolvers,
    it is refused (PASSWORD_TOO_WEAK or INVALID_CREDENTIALS) and no password longer than
    128 characters is ever handed to argon2."""
    pid, token = await invited(api, staff.token, mailbox)
    await active_patient(api, staff.token, mailbox, n=2)
    session = (await login(api, "patient2", STRONG_PASSWORD))["sessionToken"]
    spy = HasherSpy().install(api, monkeypatch)

    assert codes(await redeem(api, token, "avery.q", MEGABYTE)) == ["PASSWORD_TOO_WEAK"]
    assert codes(await login(api, "patient2", MEGABYTE)) == ["INVALID_CREDENTIALS"]
    staff_set = await api.gql(SET_CREDENTIALS, {"pid": pid, "u": "avery.q", "p": MEGABYTE}, staff.token)
    assert codes(staff_set["data"]["setCredentials"]) == ["PASSWORD_TOO_WEAK"]
    for current, new in ((STRONG_PASSWORD, MEGABYTE), (MEGABYTE, "a-brand-new-passphrase-9")):
        changed = await api.gql(CHANGE_PASSWORD, {"c": current, "n": new}, session)
        assert codes(changed["data"]["changePassword"]) in (["PASSWORD_TOO_WEAK"], ["INVALID_CREDENTIALS"])
    assert spy.hashed == []
    assert spy.longest <= 128
    assert (await login(api, "patient2", STRONG_PASSWORD))["sessionToken"]


async def test_megabyte_password_hits_the_body_cap(api: Api) -> None:
    """HASH-5: by default a 1 MB password never even reaches GraphQL (413)."""
    response = await api.client.post(
        "/graphql",
        json={
            "query": "mutation($p: String!) { login(input: {username: \"a\", password: $p}) { sessionToken } }",
            "variables": {"p": MEGABYTE},
        },
    )
    assert response.status_code == 413


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_login": "1000/minute"}])
async def test_concurrent_hashing_is_bounded(
    api: Api, staff: Staff, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HASH-5: argon2 runs off the event loop in a pool of hash_concurrency threads, so a
    login storm never computes more hashes at once than configured."""
    await active_patient(api, staff.token, mailbox)
    limit = api.settings.hash_concurrency
    lock = threading.Lock()
    active = 0
    peak = 0
    threads: set[str] = set()
    real = core.passwords._verify_and_update

    def tracked(password: str, stored: str | None) -> tuple[bool, str | None]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            threads.add(threading.current_thread().name)
        try:
            return real(password, stored)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(core.passwords, "_verify_and_update", tracked)
    results = await asyncio.gather(
        *(login(api, "patient1" if i % 2 else f"ghost{i}", f"wrong-{i}-password") for i in range(3 * limit + 2))
    )
    assert all(codes(r) == ["INVALID_CREDENTIALS"] for r in results)
    assert 1 <= peak <= limit
    assert threads and all(name.startswith("argon2") for name in threads)
    assert threading.main_thread().name not in threads


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="no per-thread nice")
async def test_hashing_threads_run_below_the_server() -> None:
    """HASH-5: the argon2 threads run PORTAL_HASH_NICE steps below the event loop's
    thread, so page reads win the CPU when hashing and reads compete for it."""
    import os

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    hasher = core.passwords.Hasher(concurrency=1, nice=settings.hash_nice)
    try:
        loop = asyncio.get_running_loop()
        worker = await loop.run_in_executor(
            hasher._pool, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )
    finally:
        hasher.close()
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert settings.hash_nice == 10
    assert worker == min(19, main + 10)


def test_hash_threads_follow_the_cpus_the_process_may_use(tmp_path: Path) -> None:
    """A container held to 2 CPUs (cgroup v2 cpu.max) on a larger host gets one argon2
    thread, not half the host's cores: a login storm then leaves the event loop a CPU."""
    import os

    from core.settings import usable_cpus

    proc = tmp_path / "cgroup"
    proc.write_text("0::/portal.slice/app\n")
    quota = tmp_path / "fs" / "portal.slice" / "app"
    quota.mkdir(parents=True)
    (quota / "cpu.max").write_text("200000 100000\n")
    mask = len(os.sched_getaffinity(0))
    assert usable_cpus(str(tmp_path / "fs"), str(proc)) == min(mask, 2)
    (quota / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one
    assert usable_cpus(str(tmp_path / "fs"), str(proc)) == 1
    (quota / "cpu.max").write_text("max 100000\n")  # no quota: the affinity mask
    assert usable_cpus(str(tmp_path / "fs"), str(proc)) == mask
    assert usable_cpus(str(tmp_path / "none"), str(tmp_path / "missing")) == mask
