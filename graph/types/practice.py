from __future__ import annotations

import strawberry

from graph.ids import PRACTICE, global_id
from graph.types.node import Node
from models import Practice as PracticeModel


@strawberry.type(
    description="The clinic's profile, used by every message (SPEC 9.1): its name, the"
    " phone number patients are told to call, the Reply-To address, the sender name and"
    " the time zone message times are written in."
)
class Practice(Node):
    id: strawberry.ID
    display_name: str
    phone: str | None = strawberry.field(description="E.164, e.g. +16175550100.")
    reply_to: str | None
    sender_name: str | None = strawberry.field(
        description="The From display name of emails (the display name when unset)."
    )
    website: str | None
    time_zone: str = strawberry.field(description="IANA, e.g. America/New_York.")

    @classmethod
    def from_model(cls, practice: PracticeModel) -> Practice:
        return cls(
            id=global_id(PRACTICE, practice.id),
            display_name=practice.name,
            phone=practice.phone,
            reply_to=practice.reply_to,
            sender_name=practice.sender_name,
            website=practice.website,
            time_zone=practice.time_zone,
        )
