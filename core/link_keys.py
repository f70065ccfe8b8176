"""Link tokens derived from the server secret, so the database never holds a usable link
(issue 10, SECURITY TOK-2).

A link is issued as a random *nonce* (256 bits from ``secrets``). Its token is
``HMAC-SHA256(link key, nonce)``, where the link key is derived from
``PORTAL_SECRET_KEY`` with HKDF under its own purpose label, so it is unrelated to the
cursor-sealing keys (``core.sealing``) drawn from the same secret. The database keeps
the token's SHA-256 digest on the link row (redemption looks it up by that, as before)
and, only while the message waits in the outbox, the nonce and the digest. A dump alone
therefore yields no token: it takes the nonce *and* the secret, and the nonce is
scrubbed with the rest of the message's variables once it has been sent.

Rotation: with ``PORTAL_SECRET_KEY_PREVIOUS`` set, a message queued under the old key is
still re-derived correctly. The digest says which key made a token (each candidate's
derivation is compared with it), so no key id is stored. Redemption needs no key at
all: the token a patient holds is hashed and looked up, whichever key made it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.secrets import TOKEN_BYTES, digest
from core.settings import Settings

# The HKDF "info": a different label than the sealer's ("portal cursor v1 key"), so the
# same secret yields independent keys for each use.
PURPOSE = b"portal link token v1"


@dataclass(frozen=True)
class NewLink:
    """What issuing a link stores (``nonce``, ``digest``) and the token itself, which
    exists only in memory (tests; the dispatcher derives its own at send time)."""

    nonce: str
    digest: str
    token: str


def _link_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(
        secret.encode("utf-8")
    )


def _token(key: bytes, nonce: str) -> str:
    mac = hmac.new(key, nonce.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


class LinkKeys:
    """The current link key and, during a rotation, the previous one."""

    def __init__(self, current: str, previous: str | None = None) -> None:
        self._current = _link_key(current)
        self._keys = [self._current]
        if previous:
            self._keys.append(_link_key(previous))

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkKeys:
        previous = settings.secret_key_previous
        return cls(
            settings.secret_key.get_secret_value(),
            previous.get_secret_value() if previous is not None else None,
        )

    def issue(self) -> NewLink:
        """A new link under the current key."""
        nonce = secrets.token_urlsafe(TOKEN_BYTES)
        token = _token(self._current, nonce)
        return NewLink(nonce, digest(token), token)

    def token_for(self, nonce: str, expected_digest: str) -> str | None:
        """The token a stored nonce stands for, re-derived under whichever key made it
        (current first, then previous); None when no key we hold made it (a wrong or
        retired key: the message can never carry a working link)."""
        for key in self._keys:
            token = _token(key, nonce)
            if hmac.compare_digest(digest(token), expected_digest):
                return token
        return None
