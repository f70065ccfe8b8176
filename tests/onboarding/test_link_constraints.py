"""A link's only database key is its patient's (migration 0022, issue 15).

Each key of ``link_token`` costs a bulk invitation one check per inserted row: the
practice's and the creator's took 80-100 ms of a 10,000-patient invitation's links
statement and guarded nothing the patient's key does not."""

import pytest
from tortoise import connections

from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(
    BACKEND != "postgres", reason="SQLite keeps the keys 0001 created (as for 0005)"
)


async def test_a_link_is_keyed_to_its_patient_only() -> None:
    # given the migrated schema; when its foreign keys on link_token are listed
    conn = connections.get("default")
    rows = await conn.execute_query_dict(
        "SELECT a.attname AS col, c.confrelid::regclass::text AS target,"
        " c.confdeltype::text AS on_delete"
        " FROM pg_constraint c JOIN pg_attribute a"
        " ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
        " WHERE c.conrelid = 'link_token'::regclass AND c.contype = 'f'"
    )
    # then only the patient's remains, cascading: deleting a patient takes its links along
    assert [(r["col"], r["target"], r["on_delete"]) for r in rows] == [
        ("patient_id", "patient", "c")
    ]
