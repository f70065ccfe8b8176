"""Connection cursors: the sort key of a row, sealed (core.sealing) for one practice and
one list, so a cursor reveals nothing, cannot be forged and is refused by any other
practice or list (SPEC 8.3)."""

from __future__ import annotations

from typing import Any

from core.sealing import BadSeal, Sealer
from graph.errors import BadRequest
from onboarding.listing import SortKey

REFUSED = "cursor is not one this service issued for this list"


class Cursors:
    def __init__(self, sealer: Sealer, practice_id: int) -> None:
        self.sealer = sealer
        self.practice_id = practice_id

    def _open(self, context: str, cursor: str) -> Any:
        try:
            return self.sealer.open(context, cursor)
        except BadSeal as exc:
            raise BadRequest(REFUSED) from exc

    def patient(self, key: SortKey) -> str:
        return self.sealer.seal(f"onboarding|{self.practice_id}", list(key))

    def open_patient(self, cursor: str) -> SortKey:
        value = self._open(f"onboarding|{self.practice_id}", cursor)
        last, first, pid = value
        return (str(last), str(first), int(pid))

    def audit(self, event_id: int, patient_id: int | None) -> str:
        return self.sealer.seal(f"audit|{self.practice_id}|{patient_id}", event_id)

    def open_audit(self, cursor: str, patient_id: int | None) -> int:
        return int(self._open(f"audit|{self.practice_id}|{patient_id}", cursor))

    def invitation(self, patient_id: int, link_id: int) -> str:
        return self.sealer.seal(f"invitations|{self.practice_id}|{patient_id}", link_id)

    def open_invitation(self, cursor: str, patient_id: int) -> int:
        return int(self._open(f"invitations|{self.practice_id}|{patient_id}", cursor))
