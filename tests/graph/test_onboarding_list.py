"""The Onboarding Tool's list at realistic size: keyset pagination walked to the end under
several filters, totals and per-status counts, all checked against an independent
computation in the test, and the number of SQL statements one page costs."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tortoise import connections

from core.secrets import digest, new_token
from models import LinkPurpose, LinkToken, PasswordOrigin, Patient, PortalAccount
from onboarding.demo import generate_patients, insert_patients
from tests.conftest import BACKEND, Api, Staff
from tests.helpers import create_patient, pk

ONBOARDING = """
query($first: Int, $after: String, $filter: OnboardingFilter) {
  onboarding(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id firstName lastName email portalStatus emailSharedWith } }
    pageInfo { endCursor hasNextPage }
    totalCount
    statusCounts { status count }
  }
}"""

PAGE_ONLY = """
query($first: Int, $after: String, $filter: OnboardingFilter) {
  onboarding(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id } }
    pageInfo { endCursor hasNextPage }
  }
}"""

COUNTS_ONLY = """
query($filter: OnboardingFilter) {
  onboarding(first: 1, filter: $filter) { statusCounts { status count } }
}"""

FULL_PAGE = """
query($first: Int, $after: String, $filter: OnboardingFilter) {
  onboarding(first: $first, after: $after, filter: $filter) {
    edges { cursor node {
      id chartNumber firstName lastName dateOfBirth email zipCode chartStatus portalEnabled
      portalStatus emailSharedWith
      account { username mustChangePassword lastLoginAt locked }
      lastInvitation { sentTo sentAt expiresAt usedAt revokedAt deliveryStatus selfService }
    } }
    pageInfo { endCursor hasNextPage }
    totalCount
    statusCounts { status count }
  }
}"""

STATUSES = [
    "DISABLED",
    "NO_EMAIL",
    "NOT_INVITED",
    "INVITED",
    "INVITATION_EXPIRED",
    "CREDENTIALS_ISSUED",
    "ACTIVE",
]
COUNT = 1200
TEMPORARY_PASSWORD_DAYS = 7  # the default PORTAL_TEMPORARY_PASSWORD_TTL_DAYS


@dataclass
class Chart:
    id: int
    chart_number: str
    first_name: str
    last_name: str
    email: str | None
    status: str
    shared: int


# --- building a practice of 1,200 patients, fast -----------------------------------------


async def populate(practice_id: int, count: int, seed: int, prefix: str) -> None:
    """Charts in bulk, then accounts and links written directly, covering every status."""
    rng = random.Random(seed)
    patients = generate_patients(practice_id, count, seed=seed, chart_prefix=prefix)
    # Mixed capitals, so the order must ignore case; non-ASCII names sort by code point.
    for i, p in enumerate(patients):
        if i % 11 == 0:
            p.last_name = p.last_name.upper()
        elif i % 13 == 0:
            p.last_name = p.last_name.lower()
        if i % 17 == 0:
            p.first_name = p.first_name.lower()
        if i % 97 == 0:
            p.last_name = rng.choice(["Ångström", "Öztürk", "Zoë", "Élan"])
        p.normalise_keys()
    await insert_patients(patients)

    enabled = await Patient.filter(practice_id=practice_id, portal_enabled=True).values(
        "id", "email"
    )
    now = datetime.now(UTC)
    accounts = []
    no_account = []
    for row in enabled:
        roll = rng.random()
        pid = row["id"]
        if roll < 0.15:  # chose their own password through a link
            accounts.append(account(pid, PasswordOrigin.PATIENT, now - timedelta(days=3)))
        elif roll < 0.22:  # staff-set, recent: CREDENTIALS_ISSUED
            accounts.append(account(pid, PasswordOrigin.STAFF, now - timedelta(days=2)))
        elif roll < 0.27:  # staff-set, past its lifetime: falls back
            accounts.append(account(pid, PasswordOrigin.STAFF, now - timedelta(days=10)))
        elif roll < 0.30:  # staff-set and used to log in
            accounts.append(
                account(pid, PasswordOrigin.STAFF, now - timedelta(days=20), logged_in=now)
            )
        elif roll < 0.33:  # a username only
            accounts.append(account(pid, None, None))
        else:
            no_account.append(row)
    await PortalAccount.bulk_create(accounts, batch_size=1000)

    links = []
    for row in no_account + [{"id": a.patient_id, "email": None} for a in accounts[:40]]:
        if not row["email"] and rng.random() < 0.8:
            continue
        kind = rng.choice(["none", "none", "outstanding", "expired", "revoked", "resent"])
        to = row["email"] or "old.address@example.com"
        if kind in ("outstanding", "resent"):
            if kind == "resent":
                links.append(link(practice_id, row["id"], to, now - timedelta(days=3), revoked=now))
            links.append(link(practice_id, row["id"], to, now - timedelta(hours=2)))
        elif kind == "expired":
            links.append(link(practice_id, row["id"], to, now - timedelta(days=5)))
        elif kind == "revoked":
            links.append(link(practice_id, row["id"], to, now - timedelta(hours=1), revoked=now))
    await LinkToken.bulk_create(links, batch_size=1000)
    await connections.get("default").execute_query(
        "UPDATE patient SET last_link_id = (SELECT MAX(l.id) FROM link_token l"
        " WHERE l.patient_id = patient.id)"
        " WHERE id IN (SELECT patient_id FROM link_token)"
    )


def account(
    pid: int,
    origin: PasswordOrigin | None,
    set_at: datetime | None,
    logged_in: datetime | None = None,
) -> PortalAccount:
    return PortalAccount(
        patient_id=pid,
        username=f"User{pid}",
        username_key=f"user{pid}",
        password_hash="$argon2id$v=19$m=19456,t=2,p=1$unusable" if origin else None,
        password_origin=origin,
        password_set_at=set_at,
        must_change_password=origin is PasswordOrigin.STAFF,
        last_login_at=logged_in,
    )


def link(
    practice_id: int, pid: int, to: str, created: datetime, revoked: datetime | None = None
) -> LinkToken:
    return LinkToken(
        practice_id=practice_id,
        patient_id=pid,
        digest=digest(new_token()),
        purpose=LinkPurpose.INVITATION,
        sent_to=to,
        created_at=created,
        expires_at=created + timedelta(days=1),
        revoked_at=revoked,
        revoke_reason="superseded" if revoked else None,
    )


# --- the independent computation --------------------------------------------------------


async def charts_of(practice_id: int) -> list[Chart]:
    """Every chart of the practice with its status computed here, from SPEC section 3,
    not through the service's SQL."""
    now = datetime.now(UTC)
    patients = await Patient.filter(practice_id=practice_id).values()
    accounts = {a["patient_id"]: a for a in await PortalAccount.all().values()}
    links: dict[int, list[dict[str, Any]]] = {}
    for lk in await LinkToken.filter(practice_id=practice_id).values():
        links.setdefault(lk["patient_id"], []).append(lk)
    emails = Counter(p["email"].lower() for p in patients if p["email"])

    def status(p: dict[str, Any]) -> str:
        a = accounts.get(p["id"])
        if not p["portal_enabled"]:
            return "DISABLED"
        if a and (a["last_login_at"] is not None or a["password_origin"] == "patient"):
            return "ACTIVE"
        if (
            a
            and a["password_origin"] == "staff"
            and a["password_set_at"] > now - timedelta(days=TEMPORARY_PASSWORD_DAYS)
        ):
            return "CREDENTIALS_ISSUED"
        if not p["email"]:
            return "NO_EMAIL"
        mine = links.get(p["id"], [])
        if any(
            lk["used_at"] is None and lk["revoked_at"] is None and lk["expires_at"] > now
            for lk in mine
        ):
            return "INVITED"
        if mine:
            return "INVITATION_EXPIRED"
        return "NOT_INVITED"

    return [
        Chart(
            id=p["id"],
            chart_number=p["chart_number"],
            first_name=p["first_name"],
            last_name=p["last_name"],
            email=p["email"],
            status=status(p),
            shared=emails[p["email"].lower()] - 1 if p["email"] else 0,
        )
        for p in patients
    ]


def matches(chart: Chart, flt: dict[str, Any], *, with_status: bool = True) -> bool:
    # an empty status list means any status
    if with_status and flt.get("status") and chart.status not in flt["status"]:
        return False
    if flt.get("hasEmail") is True and not chart.email:
        return False
    if flt.get("hasEmail") is False and chart.email:
        return False
    fields = [chart.last_name, chart.first_name, chart.chart_number, chart.email or ""]
    for term in (flt.get("search") or "").replace(",", " ").split():
        if not any(term.casefold() in f.casefold() for f in fields):
            return False
    return True


def sort_key(chart: Chart) -> tuple[str, str, int]:
    return (chart.last_name.casefold(), chart.first_name.casefold(), chart.id)


def expected_counts(charts: Iterable[Chart], flt: dict[str, Any]) -> dict[str, int]:
    counted = Counter(c.status for c in charts if matches(c, flt, with_status=False))
    return {s: counted.get(s, 0) for s in STATUSES}


async def walk(
    api: Api, token: str, flt: dict[str, Any] | None, first: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every node, following endCursor until hasNextPage is false; and each connection."""
    nodes: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    after = None
    for _ in range(COUNT + 10):
        result = await api.gql(ONBOARDING, {"first": first, "after": after, "filter": flt}, token)
        assert "errors" not in result, result
        conn = result["data"]["onboarding"]
        pages.append(conn)
        nodes.extend(e["node"] for e in conn["edges"])
        for edge in conn["edges"]:
            assert edge["cursor"]
        if conn["edges"]:
            assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        if not conn["pageInfo"]["hasNextPage"]:
            return nodes, pages
        assert len(conn["edges"]) == first
        after = conn["pageInfo"]["endCursor"]
    raise AssertionError("pagination never ended")


@pytest.fixture
async def practice(api: Api, staff: Staff, other_staff: Staff) -> list[Chart]:
    """1,200 charts for ``staff``'s practice and 150 look-alikes for another practice."""
    await populate(staff.practice_id, COUNT, seed=20240611, prefix="C")
    await populate(other_staff.practice_id, 150, seed=7, prefix="C")
    charts = await charts_of(staff.practice_id)
    assert len(charts) == COUNT
    # the data really covers every status, shared addresses and missing emails
    assert set(Counter(c.status for c in charts)) == set(STATUSES)
    assert any(c.shared for c in charts)
    return charts


FILTERS: list[dict[str, Any] | None] = [
    None,
    {},
    {"status": ["DISABLED"]},
    {"status": ["INVITED", "INVITATION_EXPIRED"]},
    {"status": ["NOT_INVITED", "NO_EMAIL", "CREDENTIALS_ISSUED", "ACTIVE"]},
    {"status": []},
    {"hasEmail": True},
    {"hasEmail": False},
    {"hasEmail": False, "status": ["NO_EMAIL", "DISABLED"]},
    {"search": "smith"},
    {"search": "  MARY,  "},
    {"search": "mary smith"},
    {"search": "C000123"},
    {"search": "c0001"},
    {"search": "example.org"},
    {"search": "example.org", "hasEmail": True, "status": ["NOT_INVITED", "INVITED"]},
    {"search": "o'brien"},
    {"search": "ångström"},
    {"search": "%"},
    {"search": "_"},
    # two characters (no trigram index), wildcards on the indexed path
    {"search": "mi"},
    {"search": "th%"},
    {"search": "a_r"},
    {"search": "nobody-matches-this"},
]


async def test_walk_to_the_end_matches_an_independent_selection(
    api: Api, staff: Staff, practice: list[Chart]
) -> None:
    # given 1,200 charts of the practice (and another practice's look-alikes)
    by_id = {c.id: c for c in practice}
    for flt in FILTERS:
        expected = sorted((c for c in practice if matches(c, flt or {})), key=sort_key)

        # when staff walk the list to its end, 200 per page
        nodes, pages = await walk(api, staff.token, flt, first=200)

        # then exactly the matching charts, each once, in (last, first, id) order
        ids = [pk(n["id"]) for n in nodes]
        assert len(ids) == len(set(ids)), flt
        assert ids == [c.id for c in expected], flt
        for node in nodes:
            chart = by_id[pk(node["id"])]
            assert node["portalStatus"] == chart.status, (flt, node)
            assert node["emailSharedWith"] == chart.shared, (flt, node)
        # and every page carries the same totals, computed independently
        counts = expected_counts(practice, flt or {})
        for conn in pages:
            assert conn["totalCount"] == len(expected), flt
            assert {s["status"]: s["count"] for s in conn["statusCounts"]} == counts, flt
            assert [s["status"] for s in conn["statusCounts"]] == STATUSES


async def test_small_pages_walk_the_whole_practice(
    api: Api, staff: Staff, practice: list[Chart]
) -> None:
    # when staff walk the unfiltered list 37 at a time (many page boundaries inside runs
    # of equal names)
    nodes, pages = await walk(api, staff.token, None, first=37)

    # then every chart appears once, in order
    ids = [pk(n["id"]) for n in nodes]
    assert ids == [c.id for c in sorted(practice, key=sort_key)]
    assert len(pages) == -(-COUNT // 37)
    # equal (last, first) pairs exist, so the id tie-break was exercised
    pairs = Counter((c.last_name.casefold(), c.first_name.casefold()) for c in practice)
    assert max(pairs.values()) > 1


async def test_status_counts_ignore_the_status_part_of_the_filter(
    api: Api, staff: Staff, practice: list[Chart]
) -> None:
    base = {"search": "example.com", "hasEmail": True}
    without = await api.gql(ONBOARDING, {"first": 5, "filter": base}, staff.token)
    narrowed = await api.gql(
        ONBOARDING, {"first": 5, "filter": {**base, "status": ["INVITED"]}}, staff.token
    )
    a = without["data"]["onboarding"]
    b = narrowed["data"]["onboarding"]
    assert a["statusCounts"] == b["statusCounts"]
    counts = {s["status"]: s["count"] for s in b["statusCounts"]}
    assert b["totalCount"] == counts["INVITED"]
    assert a["totalCount"] == sum(counts.values())
    assert counts == expected_counts(practice, base)


# --- statements per page ----------------------------------------------------------------


class StatementLog:
    def __init__(self) -> None:
        self.sql: list[str] = []

    def patient_statements(self) -> list[str]:
        # The staff-token lookup is the same for every staff call; count the rest.
        return [s for s in self.sql if "staff_user" not in s]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> StatementLog:
    """Counts every statement sent through the Tortoise connection the app shares."""
    log = StatementLog()
    conn = connections.get("default")
    for name in ("execute_query", "execute_query_dict", "execute_insert", "execute_script"):
        original = getattr(conn, name)

        def wrapper(sql: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            log.sql.append(sql)
            return _original(sql, *args, **kwargs)

        monkeypatch.setattr(conn, name, wrapper)
    return log


async def test_statements_per_read_do_not_grow_with_the_page(
    api: Api, staff: Staff, practice: list[Chart], statements: StatementLog
) -> None:
    # given a cursor in the middle of a filtered list
    flt = {"hasEmail": True, "search": "e"}
    start = await api.gql(PAGE_ONLY, {"first": 100, "filter": flt}, staff.token)
    after = start["data"]["onboarding"]["pageInfo"]["endCursor"]

    for first in (1, 50, 200):
        statements.sql.clear()

        # when staff read one page with every field, totalCount and statusCounts
        variables = {"first": first, "after": after, "filter": flt}
        result = await api.gql(FULL_PAGE, variables, staff.token)

        # then the page is complete and cost one statement besides the staff lookup
        # (page, joins and counts together, issue 15), whatever its size (200 is the
        # maximum page size)
        assert api.settings.max_page_size == 200
        assert "errors" not in result, result
        assert len(result["data"]["onboarding"]["edges"]) == first
        assert any("staff_user" in s for s in statements.sql)  # the wrapper sees the app
        issued = statements.patient_statements()
        assert len(issued) == 1, issued
        assert sum("GROUP BY" in s.upper() for s in issued) == 1, issued
        assert result["data"]["onboarding"]["totalCount"] == sum(
            c["count"] for c in result["data"]["onboarding"]["statusCounts"]
        )

    # statusCounts alone: the page statement carries the grouped counts
    statements.sql.clear()
    result = await api.gql(COUNTS_ONLY, {"filter": {"hasEmail": True}}, staff.token)
    assert "errors" not in result, result
    issued = statements.patient_statements()
    assert sum("GROUP BY" in s.upper() for s in issued) == 1, issued
    assert len(issued) == 1, issued

    # one patient with its account and newest link: one statement
    statements.sql.clear()
    query = """query($id: ID!) { patient(id: $id) { id portalStatus emailSharedWith
      account { username } lastInvitation { sentTo } } }"""
    result = await api.gql(query, {"id": str(practice[0].id)}, staff.token)
    assert result["data"]["patient"]["portalStatus"] == practice[0].status
    assert len(statements.patient_statements()) == 1


async def test_a_page_joins_and_counts_only_what_the_query_selects(
    api: Api, staff: Staff, practice: list[Chart], statements: StatementLog
) -> None:
    # given the list read with the ids only, then with the fields that need joins
    for flt in ({}, {"search": "ann"}, {"status": ["INVITED", "ACTIVE"]}):
        statements.sql.clear()

        # when staff read a page without account, invitation, shared count or counts
        result = await api.gql(PAGE_ONLY, {"first": 50, "filter": flt}, staff.token)

        # then one statement, with no join and no grouping
        assert "errors" not in result, result
        [page] = statements.patient_statements()
        assert "portal_account" not in page and "link_token" not in page, page
        assert "GROUP BY" not in page.upper() and "q.email_key" not in page, page

        # and the same page with every field is one statement with each of them,
        # a search term matched in one place only
        statements.sql.clear()
        full = await api.gql(FULL_PAGE, {"first": 50, "filter": flt}, staff.token)
        assert "errors" not in full, full
        [page] = statements.patient_statements()
        assert "portal_account" in page and "link_token" in page and "q.email_key" in page
        assert page.upper().count("GROUP BY") == 1
        # (four columns on SQLite, the trigram text on PostgreSQL)
        assert page.upper().count(" LIKE ") in ((1, 4) if flt.get("search") else (0,)), page
        assert [e["node"]["id"] for e in full["data"]["onboarding"]["edges"]] == [
            e["node"]["id"] for e in result["data"]["onboarding"]["edges"]
        ]


@pytest.mark.skipif(BACKEND != "postgres", reason="trigram indexes: PostgreSQL")
async def test_search_is_answered_within_the_practice(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    """Migration 0019: the trigram index holds the practice beside the trigrams, so a
    search reads the caller's practice's matches only, not every practice's (issue 15
    item 4: at 1,000,000 patients the old index made a search 6x dearer)."""
    for practice_staff in (staff, other_staff):
        for n in range(1, 4):
            await create_patient(api, practice_staff.token, n=n, lastName=f"Smithson{n}")
    conn = connections.get("default")
    rows = await conn.execute_query_dict(
        "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE tablename = 'patient' AND indexdef LIKE '%gin_trgm_ops%'"
    )
    assert [r["indexname"] for r in rows] == ["patient_search_trgm_practice"]
    assert "gin (practice_id, " in rows[0]["indexdef"]

    # Which index the planner takes depends on the table's size (tiny here, where a
    # b-tree bitmap wins): bench.plans --shape search on the 1,000,000-patient set shows
    # it at size (docs/onboarding-speed.md).
    page = await api.gql(
        '{ onboarding(filter: {search: "smith"}) { totalCount } }', token=staff.token
    )
    assert page["data"]["onboarding"]["totalCount"] == 3
