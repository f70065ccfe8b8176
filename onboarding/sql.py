"""Helpers for the hand-written SQL of the hot read paths.

The Onboarding Tool's page is one statement with joins; building it through the ORM
would cost a model instance per row and a query per relation. Placeholders differ by
driver (``?n`` for sqlite3, ``$n`` for asyncpg), and values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient


class Params:
    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        # Numbered placeholders (?N on SQLite, $N on PostgreSQL) so one value can be
        # referenced several times, as the status expression and keyset clause do.
        n = len(self.values)
        return f"?{n}" if self.dialect == "sqlite" else f"${n}"


@cache
def columns_of(model: type[Any], alias: str | None = None) -> str:
    """A model's columns for a hand-written SELECT, named: a cached ``SELECT *`` fails
    inside a transaction once a migration adds a column (asyncpg re-prepares a changed
    statement only outside one), and would read trigger-kept columns the model lacks.
    With ``alias``, each is read from that table alias as ``<alias>_<column>``, so a
    joined row can be split back into its models."""
    names = sorted(model._meta.db_fields)
    if alias is None:
        return ", ".join(names)
    return ", ".join(f"{alias}.{name} AS {alias}_{name}" for name in names)


async def insert_one(
    conn: BaseDBAsyncClient, table: str, columns: Sequence[str], values: Sequence[Any]
) -> None:
    """One row by a hand-written INSERT, for the hot single-row writes (an audit event, a
    session): names are code constants, every value a parameter."""
    params = Params(dialect_of(conn))
    marks = ", ".join(params(value) for value in values)
    await conn.execute_query(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
        params.values,
    )


def connection() -> BaseDBAsyncClient:
    return connections.get("default")


def dialect_of(conn: BaseDBAsyncClient) -> str:
    return conn.capabilities.dialect


def like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def as_datetime(value: Any) -> datetime | None:
    # sqlite3 hands back the ISO text Tortoise stored; asyncpg a datetime.
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def as_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)
