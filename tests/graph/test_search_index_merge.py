"""A large bulk write leaves its patients' new search-index entries in the GIN pending
list and merges them right after commit, off the request (models/search_index.py,
issue 15 item 5). PostgreSQL only: SQLite has no trigram index."""

import pytest
from tortoise import connections

from models import search_index
from tests.conftest import BACKEND, Api, Staff
from tests.helpers import enabled_patient

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


@pytest.mark.parametrize("mutation", [SEND, DISABLE])
async def test_a_large_bulk_write_is_merged_into_the_search_index_after_commit(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch, mutation: str
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
    await search_index.drain()
    assert await merged_pages() == 0
    # and the patients are found by search as before
    found = await api.gql(SEARCH, {"term": "quinn"}, staff.token)
    assert found["data"]["onboarding"]["totalCount"] == 4


async def test_a_small_bulk_write_leaves_merging_to_postgresql(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the threshold above the bulk's size
    monkeypatch.setattr(search_index, "DEFER_FROM_ROWS", 5)
    ids = [await enabled_patient(api, staff.token, n=n) for n in range(1, 5)]
    await merged_pages()
    # when staff invite the four
    await api.gql(SEND, {"ids": ids}, staff.token)
    await search_index.drain()
    # then their entries wait in the pending list as for any small write (fastupdate),
    # untouched by the service
    assert await merged_pages() > 0


async def test_the_raised_limit_ends_with_the_transaction(
    api: Api, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a bulk invitation that raised gin_pending_list_limit for its transaction
    monkeypatch.setattr(search_index, "DEFER_FROM_ROWS", 1)
    pid = await enabled_patient(api, staff.token, n=1)
    await api.gql(SEND, {"ids": [pid]}, staff.token)
    await search_index.drain()
    # then no pooled connection keeps it (SET LOCAL, not SET)
    conn = connections.get("default")
    pool = conn._pool  # noqa: SLF001 (every connection of the pool, not whichever is free)
    for holder in pool._holders:  # noqa: SLF001
        if holder._con is not None:  # noqa: SLF001
            assert await holder._con.fetchval("SHOW gin_pending_list_limit") == "4MB"  # noqa: SLF001
