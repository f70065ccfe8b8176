"""The patient search index's pending list, for bulk writes (PostgreSQL; issue 15 item 5).

Any change to a patient's status columns is a non-HOT update, so every index of
``patient`` gets an entry for the new row version; the trigram GIN index (migrations 0007
and 0019) about forty. A bulk invitation of 10,000 patients adds ~10,000 rows' worth to
the index's pending list (fastupdate), which is past the 4 MB default
``gin_pending_list_limit``: PostgreSQL then merges the whole list into the index inside
the links statement, about 0.1 s of the request, with the patients' locks held.

So a transaction writing many patients raises the limit for itself (``SET LOCAL``), and
after it commits the list is merged at once by :func:`merge_soon`, on another pooled
connection, off the request. Search results are always complete (PostgreSQL reads the
pending list too); until the merge ends (about 0.1 s for 10,000 rows) a search scans the
list as well and is slower (~11 ms against ~1 ms measured). If the process stops first,
the next insert past the default limit, or autovacuum, merges it. SQLite: nothing to do.
"""

from __future__ import annotations

from typing import Any

import structlog
from tortoise import connections
from tortoise.exceptions import OperationalError

from core.background import Background

log = structlog.get_logger("models.search_index")

# Rows of one statement from which the merge waits for after commit: below it the
# entries fit the default limit and are left to PostgreSQL's own merging.
DEFER_FROM_ROWS = 1_000
# Enough for the largest bulk action (PORTAL_MAX_BULK_IDS, 10,000: ~8.5 MB of entries).
LIMIT = "64MB"

_merges = Background()

# Every GIN index of ``patient`` (the one of 0019, or 0007's where 0019 kept it).
_MERGE = (
    "SELECT gin_clean_pending_list(i.indexrelid) FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
    " WHERE i.indrelid = 'patient'::regclass AND am.amname = 'gin'"
)


async def defer_merge(conn: Any, rows: int) -> bool:
    """Inside a transaction about to update ``rows`` patients: let their index entries
    wait in the pending list. True when the caller must :func:`merge_soon` after
    commit."""
    if conn.capabilities.dialect != "postgres" or rows < DEFER_FROM_ROWS:
        return False
    await conn.execute_query(f"SET LOCAL gin_pending_list_limit = '{LIMIT}'")
    return True


def merge_soon() -> None:
    """After commit: merge the pending list in the background."""
    _merges.spawn(_merge(), "search_index.merge")


async def _merge() -> None:
    try:
        await connections.get("default").execute_query(_MERGE)
    except OperationalError as exc:
        # The merge needs the index's owner (as VACUUM does). A database user that does
        # not own the schema leaves it to autovacuum; nothing is lost either way.
        log.warning("search_index.merge_skipped", error=type(exc).__name__)


async def drain() -> None:
    """Wait for merges still running (shutdown, tests)."""
    await _merges.drain()
