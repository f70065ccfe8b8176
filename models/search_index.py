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

Only the index's owner may merge (as for VACUUM). A database user that does not own
``patient`` would pile the entries up for a later write to merge inside its own
statement, so the limit is raised only when this process may merge.
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
_INSUFFICIENT_PRIVILEGE = "42501"
# Whether this process's database user may merge the pending list (None: not asked yet).
_may_merge: bool | None = None

# Every GIN index of ``patient`` (the one of 0019, or 0007's where 0019 kept it).
_GIN_INDEXES = (
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_am am ON am.oid = c.relam"
    " WHERE i.indrelid = 'patient'::regclass AND am.amname = 'gin'"
)
_MERGE = "SELECT gin_clean_pending_list(i.indexrelid)" + _GIN_INDEXES
# A row when this user may merge every one (owner, member of the owner, or superuser).
_MAY_MERGE = "SELECT 1" + _GIN_INDEXES + " HAVING bool_and(pg_has_role(c.relowner, 'USAGE'))"


async def defer_merge(conn: Any, rows: int) -> bool:
    """Inside a transaction about to update ``rows`` patients: let their index entries
    wait in the pending list. True when the caller must :func:`merge_soon` after
    commit."""
    global _may_merge  # noqa: PLW0603 (asked once per process)
    if conn.capabilities.dialect != "postgres" or rows < DEFER_FROM_ROWS:
        return False
    if _may_merge is None:
        _may_merge = bool(await conn.execute_query_dict(_MAY_MERGE))
    if not _may_merge:
        return False
    await conn.execute_query(f"SET LOCAL gin_pending_list_limit = '{LIMIT}'")
    return True


def merge_soon() -> None:
    """After commit: merge the pending list in the background."""
    _merges.spawn(_merge(), "search_index.merge")


async def _merge() -> None:
    global _may_merge  # noqa: PLW0603
    try:
        await connections.get("default").execute_query(_MERGE)
    except OperationalError as exc:
        # Ownership taken away since it was asked: stop deferring, so later large writes
        # merge inside their own statement as they would without this module. Any other
        # failure leaves the list to the next merge or autovacuum.
        if getattr(exc.__cause__, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            _may_merge = False
        log.warning("search_index.merge_skipped", error=type(exc.__cause__ or exc).__name__)


async def drain() -> None:
    """Wait for merges still running (shutdown, tests)."""
    await _merges.drain()
