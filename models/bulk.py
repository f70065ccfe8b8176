"""Set-based writes for the bulk paths (10,000 invitations at once), where a Tortoise model
instance or a statement round trip per row would cost more than the work itself.

On PostgreSQL each chunk is one statement over ``unnest()`` of typed arrays; SQLite,
in process, takes an ``executemany``. Table and column names are code constants, never
input; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tortoise import connections

CHUNK = 5000


def _chunks(rows: Sequence[Sequence[Any]]) -> list[Sequence[Sequence[Any]]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def _arrays(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def insert_rows(
    table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> None:
    """``columns`` are (name, PostgreSQL type) pairs; rows hold values in that order,
    already in database form. Runs on the current connection, so inside
    ``in_transaction()`` it joins that transaction."""
    if not rows:
        return
    conn = connections.get("default")
    names = ", ".join(f'"{name}"' for name, _ in columns)
    if conn.capabilities.dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        for chunk in _chunks(rows):
            await conn.execute_many(
                f'INSERT INTO "{table}" ({names}) VALUES ({marks})',  # noqa: S608
                [list(r) for r in chunk],
            )
        return
    arrays = ", ".join(f"${i + 1}::{kind}[]" for i, (_, kind) in enumerate(columns))
    for chunk in _chunks(rows):
        await conn.execute_query(
            f'INSERT INTO "{table}" ({names}) SELECT * FROM unnest({arrays})',  # noqa: S608
            _arrays(chunk, len(columns)),
        )


async def set_column(table: str, column: str, kind: str, values: dict[int, Any]) -> None:
    """``UPDATE table SET column = value WHERE id = key`` for every pair, in bulk."""
    if not values:
        return
    conn = connections.get("default")
    pairs = list(values.items())
    if conn.capabilities.dialect == "sqlite":
        await conn.execute_many(
            f'UPDATE "{table}" SET "{column}" = ? WHERE id = ?',  # noqa: S608
            [[value, key] for key, value in pairs],
        )
        return
    for chunk in _chunks(pairs):
        await conn.execute_query(
            f'UPDATE "{table}" AS t SET "{column}" = v.value'  # noqa: S608
            f" FROM unnest($1::int[], $2::{kind}[]) AS v(key, value) WHERE t.id = v.key",
            [[k for k, _ in chunk], [v for _, v in chunk]],
        )
