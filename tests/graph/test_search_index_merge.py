"""A large bulk write leaves its patients' new search-index entries in the GIN pending
list and merges them right after commit, off the request (models/search_index.py,
issue 15 item 5). PostgreSQL only: SQLite has no trigram index."""

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from models import RevokeReason, search_index
from onboarding.actor import SYSTEM
from onboarding.unit_of_work import patient_change
from tests.conftest import BACKEND, Api, Staff
from tests.helpers import enabled_patient, pk

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="GIN pending list: PostgreSQL")

SEND = """
mutation($ids: [ID!]!) {
  sendInvitation(input: {patientIds: $ids}) { results { userErrors { code } } }
}"""
DISABLE = """
mutation($ids: [ID!]!) {
  disablePortal(input: {patientIds: $ids}) { results { userErrors { code } } }
}"""
SEARCH = """
query($term: String!) { onboarding(first: 50, filter: {search: $term}) { totalCount } }
"""


async def merged_pages() -> int:
    """Merges the patient GIN indexes' pending lists now; the pages that were pending."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT COALESCE(SUM(gin_clean_pending_list(i.indexrelid)), 0)::int AS pages"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = c.relam"
        " WHERE i.indrelid = 'patient'::regclass AND am.amname = 'gin'"
    )
    return int(rows[0]["pages"])


LIMIT_NOW = "SELECT pg_size_bytes(current_setting('gin_pending_list_limit')) AS v"
RAISED = 64 * 1024 * 1024  # search_index.LIMIT


async def limit_now() -> int:
    rows = await connections.get("default").execute_query_dict(LIMIT_NOW)
    return int(rows[0]["v"])


async def limit_by_default() -> int:
    """The server's own value, which every session starts from."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT pg_size_bytes(reset_val || unit) AS v FROM pg_settings"
        " WHERE name = 'gin_pending_list_limit'"
    )
    return int(rows[0]["v"])


@pytest.fixture
def merges(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """Each merge the service schedules (it still runs); a fresh answer to whether this
    database user may merge."""
    scheduled: list[None] = []
    real = search_index.merge_soon

    def spy() -> None:
        scheduled.append(None)
        real()

    monkeypatch.setattr(search_index, "merge_soon", spy)
    monkeypatch.setattr(search_index, "_may_merge", None)
    return scheduled


@pytest.mark.parametrize("mutation", [SEND, DISABLE])
async def test_a_large_bulk_write_is_merged_into_the_search_index_after_commit(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch, mutation: str, merges: list[None]
) -> None:
    # given patients whose creation left nothing pending, and a "large" bulk of four
    monkeypatch.setattr(search_index, "DEFER_FROM_ROWS", 4)
    ids = [await enabled_patient(api, staff.token, n=n) for n in range(1, 5)]
    await merged_pages()
    # when staff write all four in one bulk action
    result = await api.gql(mutation, {"ids": ids}, staff.token)
    [payload] = result["data"].values()
    assert [r["userErrors"] for r in payload["results"]] == [[]] * 4
    # then once the background merge ends nothing is left pending
    assert len(merges) == 1
    await search_index.drain()
    assert await merged_pages() == 0
    # and the patients are found by search as before
    found = await api.gql(SEARCH, {"term": "quinn"}, staff.token)
    assert found["data"]["onboarding"]["totalCount"] == 4


async def test_a_small_bulk_write_leaves_merging_to_postgresql(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch, merges: list[None]
) -> None:
    # given the threshold above the bulk's size
    monkeypatch.setattr(search_index, "DEFER_FROM_ROWS", 5)
    ids = [await enabled_patient(api, staff.token, n=n) for n in range(1, 5)]
    # when staff invite the four
    result = await api.gql(SEND, {"ids": ids}, staff.token)
    assert [r["userErrors"] for r in result["data"]["sendInvitation"]["results"]] == [[]] * 4
    # then the service leaves their entries to PostgreSQL's own merging (fastupdate)
    assert merges == []


async def test_a_large_write_raises_the_limit_for_its_own_transaction(
    monkeypatch: pytest.MonkeyPatch, merges: list[None]
) -> None:
    default = await limit_by_default()
    assert search_index.LIMIT == "64MB"
    assert default != RAISED
    # (the transaction's connection: a pooled one would run SET LOCAL on its own)
    async with in_transaction() as conn:
        assert await search_index.defer_merge(conn, search_index.DEFER_FROM_ROWS)
        assert await limit_now() == RAISED
    async with in_transaction() as conn:
        assert not await search_index.defer_merge(conn, search_index.DEFER_FROM_ROWS - 1)
        assert await limit_now() == default


async def test_a_user_that_may_not_merge_does_not_defer(merges: list[None]) -> None:
    # given a database user that does not own the patient table's indexes
    await connections.get("default").execute_script(
        "DO $$ BEGIN CREATE ROLE portal_not_owner NOLOGIN;"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    async with in_transaction() as conn:
        [row] = await conn.execute_query_dict("SELECT current_schema() AS s")
        await conn.execute_query(f'GRANT USAGE ON SCHEMA "{row["s"]}" TO portal_not_owner')
        await conn.execute_query("SET LOCAL ROLE portal_not_owner")
        # when a large write asks to defer the merge
        deferred = await search_index.defer_merge(conn, search_index.DEFER_FROM_ROWS)
        # then it does not (nobody would merge the list after commit: the next large
        # write would pay for both inside its own statement)
        assert not deferred
        assert await limit_now() == await limit_by_default()


async def test_a_rolled_back_large_write_still_merges(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch, merges: list[None]
) -> None:
    # given a large write whose entries went to the pending list
    monkeypatch.setattr(search_index, "DEFER_FROM_ROWS", 2)
    ids = [pk(await enabled_patient(api, staff.token, n=n)) for n in range(1, 3)]
    await merged_pages()
    # when the change fails after writing
    with pytest.raises(RuntimeError):
        async with patient_change(SYSTEM, ids, practice_id=staff.practice_id) as change:
            await change.disable_portal(ids, RevokeReason.PORTAL_DISABLED)
            raise RuntimeError("after the write")
    # then the entries it left (rollback does not take index entries back) are merged
    assert len(merges) == 1
    await search_index.drain()
    assert await merged_pages() == 0


async def test_the_raised_limit_ends_with_the_transaction(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a bulk invitation that raised gin_pending_list_limit for its transaction
    monkeypatch.setattr(search_index, "DEFER_FROM_ROWS", 1)
    default = await limit_by_default()
    pid = await enabled_patient(api, staff.token, n=1)
    await api.gql(SEND, {"ids": [pid]}, staff.token)
    await search_index.drain()
    # then no pooled connection keeps it (SET LOCAL, not SET)
    conn = connections.get("default")
    pool = conn._pool  # noqa: SLF001 (every connection of the pool, not whichever is free)
    for holder in pool._holders:  # noqa: SLF001
        if holder._con is not None:  # noqa: SLF001
            limit = await holder._con.fetchval(LIMIT_NOW)  # noqa: SLF001
            assert limit == default
