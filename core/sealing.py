"""Sealed opaque values (cursors): authenticated encryption with a key derived from the
server secret, so a client can neither read nor forge what it carries (SPEC 8.3).

AES-256-GCM from ``cryptography``. The nonce is a keyed hash of the context and the
payload (the SIV construction), so the same position always gives the same cursor (clients
such as Apollo match cursors by equality) and a repeated nonce only ever encrypts the same
plaintext. The context (e.g. "patient cursor, practice 7") is authenticated data: a cursor
sealed for another practice or another list fails to open exactly like a forged one.

Key rotation: values are always sealed with the current secret, and opened with the
current one or, when ``PORTAL_SECRET_KEY_PREVIOUS`` is set, the previous one. A Tool that
holds a cursor across the deploy that rotates the secret keeps paging instead of being
refused (the same window as links queued under the old key, core.link_keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
# Longest sealed value accepted: a patient cursor with two 100-character names is ~400.
MAX_SEALED_CHARS = 1024


class BadSeal(ValueError):
    pass


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class Sealer:
    def __init__(self, secret: str, purpose: str = "cursor", previous: str | None = None) -> None:
        raw = secret.encode()
        self._aead = AESGCM(_derive(raw, f"portal {purpose} v1 key".encode()))
        # The keyed HMAC state, copied per value: HMAC-SHA256 as before (the same value
        # seals to the same cursor) without hashing the key pads again each time.
        self._nonce_mac = hmac.new(
            _derive(raw, f"portal {purpose} v1 nonce".encode()), digestmod=hashlib.sha256
        )
        # Opening only: the current key first, so the previous one costs nothing until
        # a value sealed before the rotation arrives.
        self._openers = [self._aead]
        if previous:
            self._openers.append(
                AESGCM(_derive(previous.encode(), f"portal {purpose} v1 key".encode()))
            )

    def seal(self, context: str, payload: Any) -> str:
        data = orjson.dumps(payload)
        aad = context.encode()
        mac = self._nonce_mac.copy()
        mac.update(aad + b"\x00" + data)
        nonce = mac.digest()[:NONCE_BYTES]
        sealed = nonce + self._aead.encrypt(nonce, data, aad)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, context: str, value: str) -> Any:
        if len(value) > MAX_SEALED_CHARS or not value.isascii():
            raise BadSeal("not a value this service issued")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (ValueError, binascii.Error) as exc:
            raise BadSeal("not a value this service issued") from exc
        if len(raw) < NONCE_BYTES + 16:
            raise BadSeal("not a value this service issued")
        for aead in self._openers:
            try:
                data = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
            except InvalidTag:
                continue
            return orjson.loads(data)
        raise BadSeal("not a value this service issued")
