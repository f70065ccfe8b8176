from __future__ import annotations

import strawberry

from graph.errors import BadRequest


@strawberry.type
class PageInfo:
    end_cursor: str | None
    has_next_page: bool


def page_size(first: int | None, *, default: int, maximum: int) -> int:
    if first is None:
        return default
    if first < 1 or first > maximum:
        raise BadRequest(f"first must be between 1 and {maximum}")
    return first
