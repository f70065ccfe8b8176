"""Tortoise configuration and schema set-up shared by the app, the CLI and the tests."""

from __future__ import annotations

import logging
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api import migrate as run_migrations

MODEL_MODULES = [
    "models.practice",
    "models.patient",
    "models.account",
    "models.link",
    "models.outbox",
    "models.audit",
    "models.idempotency",
    "models.webhook",
]


def normalise_url(url: str) -> str:
    # Operators paste libpq-style URLs; Tortoise names the asyncpg backend `postgres`.
    for prefix in ("postgresql://", "postgresql+asyncpg://", "asyncpg://"):
        if url.startswith(prefix):
            return "postgres://" + url[len(prefix) :]
    return url


async def _keep_session(connection: Any) -> None:
    """Return a PostgreSQL connection to the pool as it is.

    By default asyncpg sends a reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL)
    each time a connection goes back to its pool, and Tortoise gives the connection back
    after every statement outside a transaction: an extra round trip per statement. The
    service never changes session state (no SET, LISTEN, cursors or advisory locks), so
    there is nothing to reset; asyncpg still rolls back a transaction left open."""


def connection_config(database_url: str) -> str | dict[str, Any]:
    url = normalise_url(database_url)
    if url.startswith("sqlite://"):
        config = expand_db_url(url)
        # Deleted and overwritten rows (a scrubbed outbox message, a replaced digest)
        # are zeroed in the file instead of lingering in free pages (issue 10).
        config["credentials"].setdefault("secure_delete", "ON")
        return config
    if not url.startswith("postgres://"):
        return url
    config = expand_db_url(url)
    config["credentials"]["reset"] = _keep_session
    return config


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": connection_config(database_url)},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def silence_driver_parameter_logs() -> None:
    # The db_client logger prints bound parameters (emails, digests) at DEBUG; never let
    # it below INFO (SECURITY LOG-3).
    for name in ("tortoise.db_client", "tortoise"):
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


async def migrate(database_url: str) -> None:
    """Bring the schema up to date; every CLI command and the app start call this."""
    silence_driver_parameter_logs()
    try:
        await run_migrations(config=tortoise_config(database_url))
    finally:
        # Also on failure: an open aiosqlite thread would keep the process alive.
        await Tortoise.close_connections()


async def connect(database_url: str) -> None:
    silence_driver_parameter_logs()
    # Global fallback: uvicorn runs the lifespan in its own task, and requests in other
    # tasks must see the same connections.
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def disconnect() -> None:
    await Tortoise.close_connections()


async def discard_connections(alias: str = "default") -> None:
    """Drop the PostgreSQL pool after a database error; the next query opens a new one.

    A backend terminated mid-operation (failover, ``pg_terminate_backend``) can leave a
    connection that is neither usable nor seen as closed, and a connection whose BEGIN
    failed is never given back, so healing starts from a fresh pool. Terminate, not
    close: a graceful close would wait for connections that will never come back.
    SQLite has no pool and nothing to drop."""
    from tortoise import connections

    try:
        client = connections.get(alias)
    except Exception:  # not initialised (yet): nothing to drop
        return
    parent = getattr(client, "_parent", client)  # a transaction's client -> its pool owner
    pool = getattr(parent, "_pool", None)
    if pool is None:
        return
    parent._pool = None
    pool.terminate()


# For Tortoise's own CLI only (`tortoise -c models.database.TORTOISE_ORM makemigrations`);
# the service builds its configuration from Settings.
TORTOISE_ORM = tortoise_config("sqlite://:memory:")
