"""Random secrets and their digests (SECURITY TOK-1, TOK-2).

Every bearer secret the service hands out (link tokens, staff tokens, patient sessions)
is 256 bits from ``secrets`` and stored only as its SHA-256 hex digest.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
