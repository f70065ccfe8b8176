from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import strawberry

from graph.errors import BadRequest


@strawberry.type(description="Relay's PageInfo (the Cursor Connections specification).")
class PageInfo:
    start_cursor: str | None
    end_cursor: str | None
    # One side of a page is known from the page query itself (the extra row read); the
    # other costs a query, run only when a client asks for it.
    _has_next: strawberry.Private[bool | Callable[[], Awaitable[bool]]]
    _has_previous: strawberry.Private[bool | Callable[[], Awaitable[bool]]]

    @strawberry.field
    async def has_next_page(self) -> bool:
        return self._has_next if isinstance(self._has_next, bool) else await self._has_next()

    @strawberry.field
    async def has_previous_page(self) -> bool:
        if isinstance(self._has_previous, bool):
            return self._has_previous
        return await self._has_previous()


@dataclass(frozen=True)
class PageRequest:
    size: int
    cursor: str | None
    backward: bool


def page_args(
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    *,
    default: int,
    maximum: int,
) -> PageRequest:
    """Forward (first/after) or backward (last/before) paging; mixing the two is refused
    rather than guessed at."""
    if last is not None or before is not None:
        if first is not None or after is not None:
            raise BadRequest("page forwards (first, after) or backwards (last, before), not both")
        return PageRequest(
            page_size(last, default=default, maximum=maximum, name="last"), before, True
        )
    return PageRequest(page_size(first, default=default, maximum=maximum), after, False)


def page_size(first: int | None, *, default: int, maximum: int, name: str = "first") -> int:
    if first is None:
        return default
    if first < 1 or first > maximum:
        raise BadRequest(f"{name} must be between 1 and {maximum}")
    return first
