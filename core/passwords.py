"""Password policy (SPEC section 3, NIST SP 800-63B) and argon2id hashing via passlib.

Hashing runs in a dedicated, bounded thread pool: argon2id at OWASP parameters costs
tens of milliseconds and 19 MiB per call, and must never block the event loop or let a
login storm starve reads (SECURITY HASH-5).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import string
import threading
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from importlib import resources

from passlib.context import CryptContext
from rapidfuzz.distance import Levenshtein

from core import metrics

MAX_PASSWORD_LENGTH = 128
# "The username with a few characters added, removed or changed" (SECURITY PWD-5): at
# most this many single-character edits away from the username or the email's local part.
FEW_EDITS = 4


def normalize(password: str) -> str:
    """NFKC (NIST SP 800-63B 5.1.1.2, SECURITY PWD-3): "é" typed as one code point or as
    "e" plus a combining accent, and full-width "Ｐ" from an East Asian keyboard, are the
    same password whatever device types it. Every rule and every hash sees this form."""
    return unicodedata.normalize("NFKC", password)


pwd_context = CryptContext(
    schemes=["argon2"],
    deprecated="auto",
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__rounds=2,
    argon2__parallelism=1,
    argon2__min_rounds=2,
)


class PasswordProblem(StrEnum):
    """Each a whole predicate, so "the password " + value reads as a sentence (never
    "password is must not …")."""

    TOO_SHORT = "is too short"
    TOO_LONG = "is too long"
    COMMON = "is too common: found in lists of breached passwords"
    REPETITIVE = "is too repetitive"
    EQUALS_USERNAME = "must not be the username"
    CONTAINS_EMAIL = "must not contain the email address"
    CONTROL_CHARACTERS = "must not contain control characters"
    SEQUENTIAL = "is too predictable: a run of consecutive letters, digits or keys"
    CONTEXT_WORD = "must not be built from the username, the email address or the portal's name"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("models").joinpath("data/common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


_AFFIX = re.compile(r"^[\d\W_]*(.*?)[\d\W_]*$")


def _is_common(password: str) -> bool:
    lowered = password.casefold()
    common = common_passwords()
    if lowered in common:
        return True
    # "Password2024!" and "!!dragon1234" are the same guess as the word inside them.
    core = _AFFIX.match(lowered)
    if core and core.group(1) and (core.group(1) in common) and len(core.group(1)) >= 4:
        return True
    # "dragondragon", "abcabcabcabc"
    for size in range(1, len(lowered) // 2 + 1):
        if len(lowered) % size == 0 and lowered[:size] * (len(lowered) // size) == lowered:
            return True
    return False


# Runs whose neighbours make a "sequential" password (NIST 63B, SECURITY PWD-5): the
# alphabet, the digits (wrapping 9 to 0) and the keyboard rows read left to right.
_RUNS = ("abcdefghijklmnopqrstuvwxyz", "01234567890", "qwertyuiopasdfghjklzxcvbnm")
_STEPS = frozenset(pair for run in _RUNS for pair in zip(run, run[1:], strict=False))
_SERVICE_WORDS = frozenset(
    {
        "portal",
        "myportal",
        "my portal",
        "patientportal",
        "patient portal",
        "patient-portal",
        "patient.portal",
        "patient_portal",
    }
)


def _is_sequential(text: str) -> bool:
    pairs = list(zip(text, text[1:], strict=False))
    return len(text) >= 4 and (
        all(p in _STEPS for p in pairs) or all((b, a) in _STEPS for a, b in pairs)
    )


def _core(text: str) -> str:
    match = _AFFIX.match(text.casefold())
    return match.group(1) if match else ""


def _is_predictable(password: str, username: str | None) -> tuple[bool, bool]:
    """(sequential, built from a context word): "abcdefghijkl", "!!0987654321",
    "avery.q2024!" for user avery.q, "PatientPortal1"."""
    lowered, core = password.casefold(), _core(password)
    trimmed = lowered.strip(string.punctuation + " ")
    sequential = _is_sequential(trimmed) or (len(core) >= 8 and _is_sequential(core))
    context = core in _SERVICE_WORDS or (
        bool(username) and len(core) >= 4 and core == _core(username or "")
    )
    return sequential, context


def _skeleton(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _near(password: str, name: str | None) -> bool:
    """``password`` is ``name`` with a few characters added, removed or changed, ignoring
    case, separators and the digits and symbols around it: "averyquinnx", "Avery_Quinn",
    "averyquin!!!", "Jordan-Lee-2024x" for avery.quinn / jordan.lee. Either it is at most
    ``FEW_EDITS`` edits from the name, or it contains the name and, besides digits, at
    most ``FEW_EDITS`` other letters. Names under 3 characters are too short to say
    anything about a 12-character password."""
    if not name or len(_skeleton(name)) < 3:
        return False
    lowered, name = password.casefold(), name.casefold()
    skeleton, name_skeleton = _skeleton(lowered), _skeleton(name)
    pairs = ((lowered, name), (_core(lowered), _core(name)), (skeleton, name_skeleton))
    if any(
        text and target and Levenshtein.distance(text, target, score_cutoff=FEW_EDITS) <= FEW_EDITS
        for text, target in pairs
    ):
        return True
    rest = skeleton.replace(name_skeleton, "", 1)
    return rest != skeleton and sum(not ch.isdigit() for ch in rest) <= FEW_EDITS


def password_problems(
    password: str, *, min_length: int, username: str | None = None, email: str | None = None
) -> list[PasswordProblem]:
    """Every reason to refuse ``password``; empty when it is acceptable.

    Length is checked first and alone, so a 1 MB "password" costs nothing further. The
    rules judge the NFKC form, the one that is hashed: "ｐａｓｓｗｏｒｄ１２３４" is as
    common as its ASCII twin."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return [PasswordProblem.TOO_LONG]
    password = normalize(password)
    if len(password) > MAX_PASSWORD_LENGTH:  # a ligature or "㍻" grows under NFKC
        return [PasswordProblem.TOO_LONG]
    problems: list[PasswordProblem] = []
    if len(password) < min_length:
        problems.append(PasswordProblem.TOO_SHORT)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        problems.append(PasswordProblem.CONTROL_CHARACTERS)
    if len(set(password)) <= 3:
        problems.append(PasswordProblem.REPETITIVE)
    elif _is_common(password):
        problems.append(PasswordProblem.COMMON)
    sequential, context_word = _is_predictable(password, username)
    if sequential:
        problems.append(PasswordProblem.SEQUENTIAL)
    lowered = password.casefold()
    if username and lowered == username.casefold():
        problems.append(PasswordProblem.EQUALS_USERNAME)
    elif context_word or _near(password, username) or _near(password, _local_part(email)):
        problems.append(PasswordProblem.CONTEXT_WORD)
    if email and email.casefold() in lowered:
        problems.append(PasswordProblem.CONTAINS_EMAIL)
    return problems


def _local_part(email: str | None) -> str | None:
    return email.rpartition("@")[0] if email and "@" in email else None


class HashQueueFull(Exception):
    """Every hashing thread is busy and ``queue_limit`` calls already wait: the request
    is refused at once (RATE_LIMITED) rather than queued without end behind a storm."""

    # graphql-core copies an original error's ``extensions`` onto the GraphQL error.
    extensions = {"code": "RATE_LIMITED"}

    def __init__(self) -> None:
        super().__init__("Too many password checks at once; retry in a moment.")


@dataclass
class Hasher:
    """argon2id off the event loop, at most ``concurrency`` hashes at once and at most
    ``queue_limit`` more waiting for a thread."""

    concurrency: int = 2
    nice: int = 0
    queue_limit: int = 64

    def __post_init__(self) -> None:
        self._pending = 0
        self._pool = ThreadPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix="argon2",
            initializer=_lower_priority,
            initargs=(self.nice,),
        )

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self._pending >= self.concurrency + self.queue_limit:
            raise HashQueueFull
        self._pending += 1
        try:
            yield
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        """The hash of the NFKC form (``normalize``): every path that sets a password
        comes through here."""
        loop = asyncio.get_running_loop()
        with self._slot(), metrics.HASH_QUEUE.track_inprogress():
            return await loop.run_in_executor(self._pool, pwd_context.hash, normalize(password))

    async def verify_and_update(
        self, password: str, stored_hash: str | None
    ) -> tuple[bool, str | None]:
        """(ok, new_hash). ``stored_hash=None`` runs passlib's dummy verification so that
        an unknown user or an account without password costs the same as a wrong one.
        ``new_hash`` is set when the stored hash should be replaced: old parameters, or
        a hash made before passwords were normalised (see ``_verify_and_update``)."""
        loop = asyncio.get_running_loop()
        with self._slot(), metrics.HASH_QUEUE.track_inprogress():
            return await loop.run_in_executor(
                self._pool, _verify_and_update, password, stored_hash
            )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _lower_priority(nice: int) -> None:
    """Run this hashing thread ``nice`` steps below the rest of the process. Linux
    schedules each thread on its own, so when the CPU is short the event loop (and the
    database on the same machine) go first and a login waits a little longer, instead
    of every page read waiting behind argon2 (SECURITY HASH-5). Elsewhere, or without
    the right to change it, the thread keeps the process's priority."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        pass


def _verify_and_update(password: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """The NFKC form first. Hashes stored before passwords were normalised hold the raw
    form as it was typed; when the normalised form fails and the raw one differs, the raw
    one is tried too, and if it matches, a hash of the normalised form comes back as
    ``new_hash`` (the caller stores it under the patient's lock, only if the stored hash
    is still the one verified here). A password whose raw and NFKC forms differ costs two
    verifications whether or not the account exists, so the extra try tells nothing."""
    normal = normalize(password)
    tries = [normal] if normal == password else [normal, password]
    if stored_hash is None:
        for _ in tries:
            pwd_context.dummy_verify()
        return False, None
    try:
        ok, new_hash = pwd_context.verify_and_update(normal, stored_hash)
        if ok or len(tries) == 1:
            return ok, new_hash
        if not pwd_context.verify(password, stored_hash):
            return False, None
        return True, pwd_context.hash(normal)
    except ValueError:  # corrupt or unknown hash format: a failed login, never a 500
        pwd_context.dummy_verify()
        return False, None
