"""Persisted operations (SPEC 8.5): the ``extensions.persistedQuery.sha256Hash`` shape of
Apollo's PersistedQueryLink and urql's persistedExchange.

Two modes:

- **Automatic** (default): a client sends the hash alone; an unknown hash is answered
  with the GraphQL error ``PERSISTED_QUERY_NOT_FOUND`` (HTTP 200, so clients fall back),
  and the client then sends hash and text together, which registers the text in this
  process's bounded memory once it has parsed and validated.
- **Trusted documents** (``PORTAL_TRUSTED_DOCUMENTS``, a JSON manifest of hash →
  document): only the manifest's documents run, sent by hash or as their exact text;
  anything else is refused (``PERSISTED_QUERY_NOT_ALLOWED``) and nothing is registered.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Documents kept per process in automatic mode (oldest forgotten first). A front end has
# tens of operations; the bound keeps a client that registers junk from growing memory.
APQ_CAPACITY = 512
APQ_MAX_DOCUMENT_CHARS = 20_000

NOT_FOUND = "PersistedQueryNotFound"


def sha256_hex(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


class TrustedDocumentsError(ValueError):
    pass


def load_manifest(path: str) -> dict[str, str]:
    """A JSON object of sha256 hex → document (relay-compiler's persist output with
    SHA256, GraphQL Codegen's persisted-documents file); ``{"operations": {…}}`` is
    accepted too. Every hash is checked against its document: a wrong entry stops the
    start rather than refusing one operation in production."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise TrustedDocumentsError(f"cannot read trusted documents {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("operations"), dict):
        data = data["operations"]
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise TrustedDocumentsError(f"{path}: expected a JSON object of hash → document")
    for key, document in data.items():
        if sha256_hex(document) != key.removeprefix("sha256:"):
            raise TrustedDocumentsError(f"{path}: {key} is not the SHA-256 of its document")
    return {k.removeprefix("sha256:"): v for k, v in data.items()}


@dataclass
class Lookup:
    """What to execute: the document text, or an error (code, message) to answer."""

    query: str | None = None
    error: tuple[str, str] | None = None
    register: str | None = None  # hash to remember once the document validated


class PersistedOperations:
    def __init__(self, manifest: dict[str, str] | None) -> None:
        self.manifest = manifest
        self._trusted_texts = set(manifest.values()) if manifest is not None else set()
        self._cache: OrderedDict[str, str] = OrderedDict()

    @property
    def allowlist(self) -> bool:
        return self.manifest is not None

    def lookup(self, query: str | None, extensions: dict[str, Any] | None) -> Lookup:
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            if self.allowlist and query is not None and query not in self._trusted_texts:
                return Lookup(
                    error=("PERSISTED_QUERY_NOT_ALLOWED", "Only trusted documents run here.")
                )
            return Lookup(query=query)
        if (
            not isinstance(persisted, dict)
            or persisted.get("version", 1) != 1
            or not isinstance(persisted.get("sha256Hash"), str)
        ):
            return Lookup(
                error=("BAD_USER_INPUT", "persistedQuery needs version 1 and sha256Hash.")
            )
        digest = persisted["sha256Hash"].lower()
        if query is not None:
            if sha256_hex(query) != digest:
                return Lookup(error=("BAD_USER_INPUT", "sha256Hash is not the hash of query."))
            if self.allowlist:
                if digest not in self.manifest:  # type: ignore[operator]
                    return Lookup(
                        error=("PERSISTED_QUERY_NOT_ALLOWED", "Only trusted documents run here.")
                    )
                return Lookup(query=query)
            known = digest in self._cache
            fits = len(query) <= APQ_MAX_DOCUMENT_CHARS
            return Lookup(query=query, register=digest if fits and not known else None)
        if self.allowlist:
            text = self.manifest.get(digest)  # type: ignore[union-attr]
            if text is None:
                return Lookup(error=("PERSISTED_QUERY_NOT_FOUND", NOT_FOUND))
            return Lookup(query=text)
        text = self._cache.get(digest)
        if text is None:
            return Lookup(error=("PERSISTED_QUERY_NOT_FOUND", NOT_FOUND))
        self._cache.move_to_end(digest)
        return Lookup(query=text)

    def remember(self, digest: str, query: str) -> None:
        self._cache[digest] = query
        self._cache.move_to_end(digest)
        while len(self._cache) > APQ_CAPACITY:
            self._cache.popitem(last=False)
