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

# Rows per statement: the largest bulk action (PORTAL_MAX_BULK_IDS, 10,000) in one, so
# each table of a bulk invitation is written by one statement with one plan.
CHUNK = 10_000


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
    tail = f" RETURNING {returning}" if returning else ""
    returned: list[dict[str, Any]] = []
    for chunk in _chunks(rows):
        select, values = unnest_select(columns, chunk)
        sql = f'INSERT INTO "{table}" ({names}) {select}{tail}'  # noqa: S608
        if returning:
            returned.extend(await conn.execute_query_dict(sql, values))
        else:
            await conn.execute_query(sql, values)
    return returned


def unnest_select(
    columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]], first: int = 1
) -> tuple[str, list[Any]]:
    """``SELECT ... FROM unnest(...)`` giving ``rows`` (PostgreSQL), with placeholders
    from ``$first``. A column holding one value in every row (the practice, the time, the
    kind of a bulk action's rows) travels as one parameter, not an array of 10,000
    copies: asyncpg encodes and PostgreSQL unpacks each element. At least one column
    stays an array, so the number of rows is kept."""
    arrays = _arrays(rows, len(columns))
    constant = [len(rows) > 0 and col.count(col[0]) == len(col) for col in arrays]
    if all(constant):
        constant[0] = False
    values: list[Any] = []
    unnested: list[str] = []
    exprs: list[str] = []
    for (_, kind), column, same in zip(columns, arrays, constant, strict=True):
        if same:
            values.append(column[0])
            exprs.append(f"${first + len(values) - 1}::{kind}")
        else:
            values.append(column)
            unnested.append(f"${first + len(values) - 1}::{kind}[]")
            exprs.append(f"v.c{len(unnested)}")
    names = ", ".join(f"c{i + 1}" for i in range(len(unnested)))
    select = f"SELECT {', '.join(exprs)} FROM unnest({', '.join(unnested)}) AS v({names})"  # noqa: S608 (placeholders and types only)
    return select, values


def id_list(dialect: str, column: str, mark: str) -> str:
    """``column`` is one of the ids in the single parameter ``mark``: PostgreSQL plans
    and binds one array far faster than 10,000 ``IN`` parameters, and SQLite reads the
    ids from one JSON text. Pass the ids through :func:`id_list_value`."""
    if dialect == "postgres":
        return f"{column} = ANY({mark}::int[])"
    return f"{column} IN (SELECT value FROM json_each({mark}))"  # noqa: S608 (names are code)


def not_in_id_list(dialect: str, column: str, mark: str) -> str:
    """``column`` is none of the ids in ``mark`` (from :func:`id_list_value`).

    On PostgreSQL a subquery, which it hashes in every plan. ``NOT (column =
    ANY(array))`` is hashed only while the array is a constant of a custom plan; from
    the sixth run of a prepared statement on a connection PostgreSQL may keep a generic
    plan, which then searched the array linearly for every row: the revocation of a
    10,000-patient invitation went from about 0.2 s to 0.7 s in a long-running server."""
    if dialect == "postgres":
        return f"{column} NOT IN (SELECT unnest({mark}::int[]))"
    return f"NOT ({id_list(dialect, column, mark)})"


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
