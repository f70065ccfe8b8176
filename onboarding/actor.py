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

    def as_patient(self, patient_id: int, practice_id: int) -> Actor:
        """The same request, acting as the patient it just authenticated (a login, a
        redeemed link): the audit trail then names the patient, not ANONYMOUS."""
        return Actor(
            ActorType.PATIENT, patient_id, practice_id, self.client_addr, self.request_id
        )


# Work no person started: reminders, delivery outcomes.
SYSTEM = Actor(ActorType.SYSTEM, None, None, None, None)
