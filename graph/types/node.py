from __future__ import annotations

import strawberry


@strawberry.interface(
    description="An object with a globally unique, opaque id (Relay's Node; SPEC 8.2)."
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="Globally unique and opaque: store it and pass it back as it is."
    )
