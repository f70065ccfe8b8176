"""Random secrets and their digests (SECURITY TOK-1, TOK-2).

Every bearer secret the service hands out (link tokens, staff tokens, patient sessions)
is 256 bits from ``secrets`` and stored only as its SHA-256 hex digest.
"""

from __future__ import annotations

import hashlib
import os
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def local_secret(path: str = ".portal-secret") -> str:
    """A development server secret kept in an owner-only file beside the process, made
    on first use; production sets ``PORTAL_SECRET_KEY`` (the same on every host)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as existing:
            value = existing.read().strip()
        if value:
            return value
        raise RuntimeError(f"{path} is empty: delete it or set PORTAL_SECRET_KEY") from None
    value = new_token()
    with os.fdopen(fd, "w", encoding="ascii") as created:
        created.write(value + "\n")
    return value
