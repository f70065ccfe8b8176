"""The one "not given" marker of partial updates (updatePatient, updatePractice): a field
left UNSET is not changed, while None clears it. The API's own marker is
``strawberry.UNSET``; ``graph.mutations._shared.given`` translates it, so the domain
never depends on Strawberry."""

from __future__ import annotations

from typing import Any


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
