from __future__ import annotations

from dataclasses import dataclass

from models import ActorType


@dataclass(frozen=True)
class Actor:
    """Who is calling, as audit events record it. Staff actions always name the
    individual staff user (HIPAA unique user identification)."""

    actor_type: ActorType
    actor_id: int | None
    practice_id: int | None
    client_addr: str | None
    request_id: str | None

    @property
    def is_staff(self) -> bool:
        return self.actor_type is ActorType.STAFF
