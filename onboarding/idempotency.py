"""Idempotency keys for the bulk staff actions (SPEC 7.2): a retried request or a double
click with the same key replays the first request's results and acts only once.

The key row is written inside the same transaction as the action, so the unique index
decides between two concurrent twins, and a failed action leaves the key unused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.clock import utcnow
from models import IdempotencyKey
from onboarding.errors import ErrorCode, Problem

MAX_KEY_LENGTH = 100


@dataclass(frozen=True)
class Idempotency:
    practice_id: int
    operation: str
    key: str
    fingerprint: str

    @classmethod
    def of(cls, practice_id: int, operation: str, key: str, request: dict[str, Any]) -> Idempotency:
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode())
        return cls(practice_id, operation, key, digest.hexdigest())

    def problem(self) -> Problem | None:
        if not self.key or len(self.key) > MAX_KEY_LENGTH or not self.key.isprintable():
            return Problem(
                ErrorCode.INVALID_INPUT,
                f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} printable characters",
                ("idempotencyKey",),
            )
        return None

    async def stored(self) -> tuple[Any | None, Problem | None]:
        """(result of the earlier request, None), (None, problem) when the key was used
        for a different request, or (None, None) for a new key."""
        row = await IdempotencyKey.filter(
            practice_id=self.practice_id, operation=self.operation, key=self.key
        ).first()
        if row is None:
            return None, None
        if row.fingerprint != self.fingerprint:
            return None, Problem(
                ErrorCode.INVALID_INPUT,
                "this idempotencyKey was already used for a different request",
                ("idempotencyKey",),
            )
        return row.result, None

    async def record(self, result: Any) -> None:
        """Call inside the action's transaction: a twin that committed first makes this
        raise IntegrityError, which rolls the action back."""
        await IdempotencyKey.create(
            practice_id=self.practice_id,
            operation=self.operation,
            key=self.key,
            fingerprint=self.fingerprint,
            result=result,
            created_at=utcnow(),
        )
