"""Set-based writes for the bulk paths (10,000 invitations at once), where a Tortoise model
instance or a statement round trip per row would cost more than the work itself.

On PostgreSQL each chunk is one statement over ``unnest()`` of typed arrays; SQLite,
in process, takes an ``executemany``. Table and column names are code constants, never
input; every value is a bound parameter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

CHUNK = 5000


def _chunks(rows: Sequence[Sequence[Any]]) -> list[Sequence[Sequence[Any]]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def _arrays(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


def _postgres(conn: BaseDBAsyncClient) -> bool:
    return conn.capabilities.dialect == "postgres"


async def insert_rows(
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    *,
    returning: str | None = None,
) -> list[dict[str, Any]] | None:
    """``columns`` are (name, PostgreSQL type) pairs; rows hold values in that order,
    already in database form. Runs on the current connection, so inside
    ``in_transaction()`` it joins that transaction.

    ``returning`` (a column list) gives back the inserted rows' columns on PostgreSQL;
    SQLite's ``executemany`` cannot, so there the answer is ``None`` and the caller
    reads the rows back by a key it chose."""
    if not rows:
        return []
    conn = connections.get("default")
    names = ", ".join(f'"{name}"' for name, _ in columns)
    if not _postgres(conn):
        marks = ", ".join("?" for _ in columns)
        for chunk in _chunks(rows):
            await conn.execute_many(
                f'INSERT INTO "{table}" ({names}) VALUES ({marks})',  # noqa: S608
                [list(r) for r in chunk],
            )
        return None
    arrays = ", ".join(f"${i + 1}::{kind}[]" for i, (_, kind) in enumerate(columns))
    tail = f" RETURNING {returning}" if returning else ""
    returned: list[dict[str, Any]] = []
    for chunk in _chunks(rows):
        sql = f'INSERT INTO "{table}" ({names}) SELECT * FROM unnest({arrays}){tail}'  # noqa: S608
        if returning:
            returned.extend(await conn.execute_query_dict(sql, _arrays(chunk, len(columns))))
        else:
            await conn.execute_query(sql, _arrays(chunk, len(columns)))
    return returned


def id_list(dialect: str, column: str, mark: str) -> str:
    """``column`` is one of the ids in the single parameter ``mark``: PostgreSQL plans
    and binds one array far faster than 10,000 ``IN`` parameters, and SQLite reads the
    ids from one JSON text. Pass the ids through :func:`id_list_value`."""
    if dialect == "postgres":
        return f"{column} = ANY({mark}::int[])"
    return f"{column} IN (SELECT value FROM json_each({mark}))"  # noqa: S608 (names are code)


def id_list_value(dialect: str, ids: Sequence[int]) -> Any:
    return list(ids) if dialect == "postgres" else json.dumps(list(ids))


async def set_column(table: str, column: str, kind: str, values: dict[int, Any]) -> None:
    """``UPDATE table SET column = value WHERE id = key`` for every pair, in bulk."""
    if not values:
        return
    conn = connections.get("default")
    pairs = list(values.items())
    if not _postgres(conn):
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
