"""Counts per status kept per practice (migration 0018, issue 15 item 4) stay exact.

The kept counts are the count of each *status class* per practice, kept by triggers on
``patient``, plus the patients the two time-dependent statuses move out of their class,
read at the time of the question. Random sequences of the real operations (through the
API, the bulk paths by filter, the demo/benchmark bulk loader, and hand-written SQL that
deletes or moves patients) mixed with jumps of the clock (links expiring, staff-set
passwords lapsing) must leave them equal to counts computed from scratch, at every step.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from tortoise import connections

from core.clock import utcnow
from onboarding import status as status_rule
from onboarding.admin import create_practice, create_staff
from onboarding.demo import generate_patients, insert_patients
from onboarding.listing import OnboardingFilter, PatientReader
from onboarding.sql import Params, as_datetime
from onboarding.status import PortalStatus, status_sql
from tests.conftest import BACKEND, POSTGRES_URL, TOKEN_RE, Api, Mailbox, body_text, token_from
from tests.helpers import ENABLE, SEND, chart, create_patient, pk
from tests.security.support import (
    DISABLE,
    LOGIN_FULL,
    REDEEM,
    SELF_RESET,
    SET_CREDENTIALS,
    UPDATE_PATIENT,
    identity,
)

COUNTS = """
query($filter: OnboardingFilter) {
  onboarding(first: 3, filter: $filter) {
    edges { node { id portalStatus } }
    totalCount
    statusCounts { status count }
  }
}"""
ENABLE_BY_FILTER = """
mutation($filter: OnboardingFilter!) {
  enablePortal(input: {filter: $filter}) { userErrors { code } }
}"""
SEND_BY_FILTER = """
mutation($filter: OnboardingFilter!) {
  sendInvitation(input: {filter: $filter, confirmSharedEmail: true}) { userErrors { code } }
}"""
STAFF_PASSWORD = "temporary-passphrase-31"
OWN_PASSWORD = "violet-harbor-tuesday-42"


async def scratch_counts(practice_id: int, ttl: timedelta) -> dict[str, int]:
    """Counts per status by scanning the practice with the status rule, now."""
    conn = connections.get("default")
    params = Params(conn.capabilities.dialect)
    now = utcnow()
    status = status_sql(params(now), params(now - ttl))
    sql = (
        f"SELECT s.status AS status, COUNT(*) AS n FROM (SELECT {status} AS status"
        f" FROM patient p WHERE p.practice_id = {params(practice_id)}) s GROUP BY s.status"
    )
    counts = {s.value: 0 for s in PortalStatus}
    for row in await conn.execute_query_dict(sql, params.values):
        counts[row["status"]] = int(row["n"])
    return counts


async def assert_exact(api: Api, tokens: dict[int, str], *, filters: bool = False) -> None:
    # Work a request left running after its answer (a self-service reset answers before
    # it acts) would write between the reads below, which are several statements.
    await api.services.background.drain()
    conn = connections.get("default")
    # the kept table itself, against a grouping of the generated class column
    kept = {
        (r["practice_id"], r["status_class"]): int(r["n"])
        for r in await conn.execute_query_dict(
            "SELECT practice_id, status_class, n FROM patient_status_count"
        )
    }
    grouped = {
        (r["practice_id"], r["status_class"]): int(r["n"])
        for r in await conn.execute_query_dict(
            "SELECT practice_id, status_class, COUNT(*) AS n FROM patient"
            " GROUP BY practice_id, status_class"
        )
    }
    assert {k: n for k, n in kept.items() if n} == grouped
    # the kept buckets of expiry, against the patients' own columns (computed here)
    expiry = {
        (r["practice_id"], r["kind"], int(r["bucket"]), r["status_class"]): int(r["n"])
        for r in await conn.execute_query_dict(
            "SELECT practice_id, kind, bucket, status_class, n FROM patient_status_expiry"
        )
    }
    buckets: dict[tuple[int, str, int, str], int] = {}
    for r in await conn.execute_query_dict(
        "SELECT practice_id, status_class, staff_password_set_at, link_open_until FROM patient"
    ):
        staff, link = as_datetime(r["staff_password_set_at"]), as_datetime(r["link_open_until"])
        keys = []
        if staff and r["status_class"] in ("NO_EMAIL", "INVITATION_EXPIRED", "NOT_INVITED"):
            keys.append(("S", int(staff.timestamp()) // 3600))
        if link and r["status_class"] in ("INVITATION_EXPIRED", "NOT_INVITED"):
            keys.append(("L", int(link.timestamp()) // 600))
        for kind, bucket in keys:
            key = (r["practice_id"], kind, bucket, r["status_class"])
            buckets[key] = buckets.get(key, 0) + 1
    assert {k: n for k, n in expiry.items() if n} == buckets
    ttl = timedelta(days=api.settings.temporary_password_ttl_days)
    for practice_id, token in tokens.items():
        expected = await scratch_counts(practice_id, ttl)
        # the reader's practice-wide counts (the kept path) ...
        reader = PatientReader(practice_id, ttl)
        assert {s.value: n for s, n in (await reader.status_counts(None)).items()} == expected
        # ... and the page's, with and without a status filter (its counts ignore it)
        for flt in (None, {"status": ["INVITED", "CREDENTIALS_ISSUED"]}):
            data = (await api.gql(COUNTS, {"filter": flt}, token))["data"]["onboarding"]
            assert {c["status"]: c["count"] for c in data["statusCounts"]} == expected
            wanted = flt["status"] if flt else list(expected)
            assert data["totalCount"] == sum(expected[s] for s in wanted)
            assert all(e["node"]["portalStatus"] in wanted for e in data["edges"])
        if filters:
            # a status filter (conditions on the class and the time-dependent columns)
            # selects exactly the patients of that status
            for s in PortalStatus:
                page = await api.gql(
                    COUNTS.replace("first: 3", "first: 100"),
                    {"filter": {"status": [s.value]}},
                    token,
                )
                nodes = page["data"]["onboarding"]["edges"]
                assert len(nodes) == min(expected[s.value], 100), s
                assert {e["node"]["portalStatus"] for e in nodes} <= {s.value}
        # a filtered count is still computed on the rows: it must agree with the scan
        computed = await reader.status_counts(
            OnboardingFilter(reachable_by=["EMAIL", "SMS", "NONE"])
        )
        assert {s.value: n for s, n in computed.items()} == expected


def test_the_read_and_the_triggers_use_the_same_buckets() -> None:
    migration = importlib.import_module("models.migrations.0018_status_counts")
    assert migration.STAFF_BUCKET_SECONDS == status_rule.STAFF_BUCKET_SECONDS
    assert migration.LINK_BUCKET_SECONDS == status_rule.LINK_BUCKET_SECONDS


# --- random sequences of operations -----------------------------------------------------

INDEX = st.integers(min_value=0, max_value=50)
step = st.one_of(
    st.tuples(st.just("create"), st.booleans(), st.booleans()),
    st.tuples(st.just("enable"), INDEX),
    st.tuples(
        st.just("enable_all_disabled"),
    ),
    st.tuples(st.just("disable"), INDEX),
    st.tuples(st.just("invite"), INDEX),
    st.tuples(
        st.just("invite_not_invited"),
    ),
    st.tuples(st.just("credentials"), INDEX),
    st.tuples(st.just("login"), INDEX),
    st.tuples(st.just("redeem"), INDEX),
    # the patient asks for a reset link: a link can be open beside a staff-set password
    st.tuples(st.just("self_reset"), INDEX),
    st.tuples(st.just("email"), INDEX, st.sampled_from(["new", "none"])),
    st.tuples(st.just("sms"), INDEX, st.booleans()),
    st.tuples(st.just("chart"), INDEX, st.sampled_from(["INACTIVE", "ACTIVE", "DECEASED"])),
    st.tuples(
        st.just("time"),
        st.sampled_from(
            # small steps cross the ten-minute and hourly buckets of the kept counts
            [
                timedelta(minutes=4),
                timedelta(minutes=11),
                timedelta(minutes=30),
                timedelta(minutes=59),
                timedelta(hours=23),
                timedelta(hours=25),
                timedelta(days=6),
                timedelta(days=8),
            ]
        ),
    ),
    st.tuples(st.just("bulk_insert"), st.integers(min_value=1, max_value=5)),
    st.tuples(st.just("sql_delete"), INDEX),
    st.tuples(st.just("sql_move"), INDEX),
)


class Clock:
    """The time the service sees, moved forward by the scenario (time-machine)."""

    def __init__(self) -> None:
        # Three minutes past the hour: the steps below then land at known places in
        # the kept counts' buckets (ten minutes, an hour), whatever the time of the run.
        now = utcnow()
        self.at: datetime = now.replace(minute=3, second=0, microsecond=0)
        self.traveller: Any = None
        self.forward(timedelta(0))

    def forward(self, by: timedelta) -> None:
        self.stop()
        self.at += by
        self.traveller = time_machine.travel(self.at, tick=False)
        self.traveller.start()

    def stop(self) -> None:
        if self.traveller is not None:
            self.traveller.stop()
            self.traveller = None


class Scenario:
    def __init__(self, api: Api, mailbox: Mailbox, token: str, other: int, tokens: dict) -> None:
        self.api, self.mailbox, self.token, self.other = api, mailbox, token, other
        self.tokens = tokens
        self.patients: list[str] = []  # global ids of the first practice's patients
        self.emails: dict[str, str | None] = {}
        self.numbers: dict[str, int] = {}  # patient -> n of its chart (its last name)
        self.staff_set: dict[str, str] = {}  # patient -> username with a staff password
        self.n = 0

    def pick(self, i: int) -> str | None:
        return self.patients[i % len(self.patients)] if self.patients else None

    async def gql(self, query: str, variables: dict[str, Any], token: str | None = None) -> Any:
        answer = await self.api.gql(query, variables, token)
        # user errors are fine (a refused step is a step); faults are not
        assert "errors" not in answer, answer
        return answer["data"]

    async def run(self, action: tuple[Any, ...], clock: Clock) -> None:
        kind, *args = action
        pid = (
            self.pick(args[0])
            if args and isinstance(args[0], int) and kind != "bulk_insert"
            else None
        )
        conn = connections.get("default")
        mark = "?" if BACKEND == "sqlite" else "$1"
        if kind == "create":
            self.n += 1
            with_email, sms = args
            email = f"p{self.n}@example.com" if with_email else None
            extra: dict[str, Any] = {"email": email}
            if sms:
                extra |= {"mobilePhone": f"+1617555{self.n:04d}", "smsConsent": True}
            new = await create_patient(self.api, self.token, n=self.n, **extra)
            self.patients.append(new)
            self.emails[new] = email
            self.numbers[new] = self.n
        elif kind == "enable" and pid:
            await self.gql(ENABLE, {"ids": [pid]}, self.token)
        elif kind == "enable_all_disabled":
            await self.gql(ENABLE_BY_FILTER, {"filter": {"status": ["DISABLED"]}}, self.token)
        elif kind == "disable" and pid:
            await self.gql(DISABLE, {"ids": [pid]}, self.token)
        elif kind == "invite" and pid:
            await self.gql(SEND, {"ids": [pid], "confirm": True}, self.token)
        elif kind == "invite_not_invited":
            await self.gql(SEND_BY_FILTER, {"filter": {"status": ["NOT_INVITED"]}}, self.token)
        elif kind == "credentials" and pid:
            username = f"user{pk(pid)}"
            data = await self.gql(
                SET_CREDENTIALS, {"pid": pid, "u": username, "p": STAFF_PASSWORD}, self.token
            )
            if not data["setCredentials"]["userErrors"]:
                self.staff_set[pid] = username
        elif kind == "login" and pid in self.staff_set:
            await self.gql(LOGIN_FULL, {"u": self.staff_set[pid], "p": STAFF_PASSWORD})
        elif kind == "redeem" and pid and self.emails.get(pid):
            await self.api.deliver()
            links = [
                m for m in self.mailbox.to(self.emails[pid] or "") if TOKEN_RE.search(body_text(m))
            ]
            if links:
                values = {
                    "token": token_from(links[-1]),
                    "username": f"own{pk(pid)}",
                    "password": OWN_PASSWORD,
                    "dateOfBirth": chart()["dateOfBirth"],
                }
                await self.gql(REDEEM, {"input": values})
        elif kind == "self_reset" and pid and self.emails.get(pid):
            who = identity(self.numbers[pid], email=self.emails[pid])
            await self.gql(SELF_RESET, {"input": who})
        elif kind == "email" and pid:
            self.n += 1
            email = f"moved{self.n}@example.com" if args[1] == "new" else None
            data = await self.gql(
                UPDATE_PATIENT, {"input": {"id": pid, "email": email}}, self.token
            )
            if not data["updatePatient"]["userErrors"]:
                self.emails[pid] = email
        elif kind == "sms" and pid:
            values = (
                {"mobilePhone": f"+1617666{pk(pid) % 10000:04d}", "smsConsent": True}
                if args[1]
                else {"smsConsent": False}
            )
            await self.gql(UPDATE_PATIENT, {"input": {"id": pid, **values}}, self.token)
        elif kind == "chart" and pid:
            await self.gql(
                UPDATE_PATIENT, {"input": {"id": pid, "chartStatus": args[1]}}, self.token
            )
        elif kind == "time":
            await self.api.deliver()  # mail queued before the jump goes out before it
            clock.forward(args[0])
        elif kind == "bulk_insert":
            # the demo and benchmark loaders insert straight into the table, in bulk
            self.n += 1
            practice_id = next(iter(self.tokens))
            rows = generate_patients(practice_id, args[0], seed=self.n, chart_prefix=f"B{self.n}-")
            for i, row in enumerate(rows):
                row.portal_enabled = i % 2 == 0
            await insert_patients(rows)
        elif kind == "sql_delete" and pid:
            # a hand-written removal in psql, dependents first
            self.patients.remove(pid)
            for sql in (
                f"UPDATE patient SET last_link_id = NULL WHERE id = {mark}",
                "DELETE FROM patient_session WHERE account_id IN"
                f" (SELECT id FROM portal_account WHERE patient_id = {mark})",
                f"DELETE FROM portal_account WHERE patient_id = {mark}",
                f"DELETE FROM link_token WHERE patient_id = {mark}",
                f"DELETE FROM patient WHERE id = {mark}",
            ):
                await conn.execute_query(sql, [pk(pid)])
        elif kind == "sql_move" and pid:
            # a chart moved to another practice by hand (no workflow does it)
            self.patients.remove(pid)
            await conn.execute_query(
                f"UPDATE patient SET practice_id = {self.other}, chart_number = 'MOVED-' || id"
                f" WHERE id = {mark}",
                [pk(pid)],
            )


scenario = st.lists(step, min_size=1, max_size=24)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases every run (tests stay deterministic)
    database=None,
    # shrinking a failing sequence of API calls takes many minutes; the failing
    # sequence is printed as it is
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=scenario)
# A staff-set password inside its lifetime beside an open link (a reset the patient asked
# for, an invitation sent after): such a patient must be moved once, not twice.
@example(steps=[("enable", 0), ("credentials", 0), ("self_reset", 0), ("invite", 0)])
# A link read a minute before it ends, in the ten minutes now is in (the bucket counted by
# scanning); a staff-set password a minute before it lapses, in the hour of the cutoff.
@example(
    steps=[
        ("enable", 0),
        ("invite", 0),
        ("time", timedelta(hours=23)),
        ("time", timedelta(minutes=59)),
    ]
)
@example(
    steps=[
        ("enable", 0),
        ("credentials", 0),
        ("time", timedelta(days=6)),
        ("time", timedelta(hours=23)),
        ("time", timedelta(minutes=59)),
    ]
)
async def test_kept_counts_equal_counts_from_scratch_after_any_operations(
    api: Api, mailbox: Mailbox, steps: list[tuple[Any, ...]]
) -> None:
    clock = Clock()
    # each example gets practices of its own (the database is emptied per test only)
    practice = await create_practice("Counting Clinic")
    _, token = await create_staff(practice.id, "Front desk")
    other = await create_practice("Other Clinic")
    _, other_token = await create_staff(other.id, "Other desk")
    tokens = {practice.id: token, other.id: other_token}
    run = Scenario(api, mailbox, token, other.id, tokens)
    try:
        for action in [("create", True, False), ("create", False, True), *steps]:
            await run.run(action, clock)
            await assert_exact(api, tokens, filters=action[0] in ("time", "bulk_insert"))
        await assert_exact(api, tokens, filters=True)
        # and later, whatever expired in the meantime
        clock.forward(timedelta(days=8))
        await assert_exact(api, tokens, filters=True)
    finally:
        clock.stop()
        mailbox.clear()


async def test_a_status_filter_reads_the_class_not_the_practice(api: Api, staff: Any) -> None:
    """A filter on one status class is answered in name order by the class index; the
    page is the same as without the index's help (the exact test stays beside it)."""
    rows = generate_patients(staff.practice_id, 60, seed=3)
    for i, row in enumerate(rows):
        row.portal_enabled = i % 20 != 0  # three DISABLED patients among 60
    await insert_patients(rows)
    data = (await api.gql(COUNTS, {"filter": {"status": ["DISABLED"]}}, staff.token))["data"]
    assert data["onboarding"]["totalCount"] == 3
    assert [e["node"]["portalStatus"] for e in data["onboarding"]["edges"]] == ["DISABLED"] * 3
    reader = PatientReader(staff.practice_id, timedelta(days=7))
    sql, _ = reader.page_statement(3, None, OnboardingFilter(statuses=[PortalStatus.DISABLED]))
    assert "p.status_class = 'DISABLED'" in sql


# --- two writers on one practice (PostgreSQL) ---------------------------------------------


@pytest.mark.skipif(BACKEND != "postgres", reason="row locks and concurrent writers: PostgreSQL")
async def test_two_writers_on_one_practice_keep_the_counts_exact(
    api: Api, mailbox: Mailbox
) -> None:
    import asyncpg

    practice = await create_practice("Busy Clinic")
    _, token = await create_staff(practice.id, "Front desk")
    tokens = {practice.id: token}
    await insert_patients(generate_patients(practice.id, 40, seed=7))
    await assert_exact(api, tokens)

    # Two transactions move patients between the same classes in opposite directions,
    # interleaved: the second waits for the first's count rows, then adds to what the
    # first committed (READ COMMITTED re-reads the row it waited for).
    url = (POSTGRES_URL or "").replace("postgres://", "postgresql://", 1)
    one, two = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        ids = [
            r["id"]
            for r in await one.fetch(
                "SELECT id FROM patient WHERE practice_id = $1 ORDER BY id", practice.id
            )
        ]
        t1, t2 = one.transaction(), two.transaction()
        await t1.start()
        await t2.start()
        await one.execute(
            "UPDATE patient SET portal_enabled = NOT portal_enabled WHERE id = ANY($1)", ids[:10]
        )
        waiting = asyncio.ensure_future(
            two.execute(
                "UPDATE patient SET portal_enabled = NOT portal_enabled WHERE id = ANY($1)",
                ids[10:25],
            )
        )
        await asyncio.sleep(0.3)
        await t1.commit()
        await waiting
        await t2.commit()
    finally:
        await one.close()
        await two.close()
    await assert_exact(api, tokens)

    # And the real workflows racing: invitations, disables, enables and staff-set
    # passwords on different patients of one practice, all at once, through the API.
    new = [await create_patient(api, token, n=100 + i) for i in range(12)]
    await api.gql(ENABLE, {"ids": new}, token)
    calls = []
    for i, pid in enumerate(new):
        if i % 3 == 0:
            calls.append(api.gql(SEND, {"ids": [pid], "confirm": True}, token))
        elif i % 3 == 1:
            calls.append(
                api.gql(SET_CREDENTIALS, {"pid": pid, "u": f"u{i}", "p": STAFF_PASSWORD}, token)
            )
        else:
            calls.append(api.gql(DISABLE, {"ids": [pid]}, token))
    calls.append(api.gql(SEND_BY_FILTER, {"filter": {"status": ["NOT_INVITED"]}}, token))
    calls.append(api.gql(ENABLE_BY_FILTER, {"filter": {"status": ["DISABLED"]}}, token))
    for answer in await asyncio.gather(*calls):
        assert "errors" not in answer, answer
    await assert_exact(api, tokens)


@pytest.mark.skipif(BACKEND != "postgres", reason="row locks and concurrent writers: PostgreSQL")
async def test_writers_of_one_practice_taking_count_rows_in_opposite_orders_do_not_deadlock(
    api: Api, mailbox: Mailbox
) -> None:
    """A redemption first consumes its link (the link bucket's row), then activates the
    account (the class rows); a concurrent change of another patient takes the class
    rows first, then the same bucket. Without the practice's advisory lock (migration
    0018, ``_LOCK``) PostgreSQL kills one of them with a deadlock (found by review)."""
    import asyncpg

    practice = await create_practice("Crossing Clinic")
    _, token = await create_staff(practice.id, "Front desk")
    first, second = [await create_patient(api, token, n=200 + i) for i in range(2)]
    await api.gql(ENABLE, {"ids": [first, second]}, token)
    sent = await api.gql(SEND, {"ids": [first, second], "confirm": True}, token)
    assert "errors" not in sent, sent
    url = (POSTGRES_URL or "").replace("postgres://", "postgresql://", 1)
    one, two = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        link = await one.fetchval("SELECT last_link_id FROM patient WHERE id = $1", pk(first))
        t1, t2 = one.transaction(), two.transaction()
        await t1.start()
        await t2.start()
        # The redemption's first step: the link is used, the bucket row changes.
        await one.execute("UPDATE link_token SET used_at = now() WHERE id = $1", link)
        # The other writer: a class change of the second patient (class rows, then the
        # same bucket, which the first holds).
        other = asyncio.ensure_future(
            two.execute("UPDATE patient SET portal_enabled = false WHERE id = $1", pk(second))
        )
        for _ in range(200):
            if await one.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                two.get_server_pid(),
            ):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the second writer never waited")
        # The redemption's second step: the account becomes active (class rows).
        await one.execute("UPDATE patient SET account_active = true WHERE id = $1", pk(first))
        await t1.commit()
        await other
        await t2.commit()
    finally:
        await one.close()
        await two.close()
    await assert_exact(api, {practice.id: token})


async def test_deleting_a_practice_takes_its_patients_and_counts_with_it(
    api: Api, mailbox: Mailbox
) -> None:
    """An operator offboarding a clinic deletes its practice row; the cascade deletes its
    patients (and, by ``last_link_id``'s SET NULL, updates them first). The count
    triggers used to upsert those patients' -1s for the practice being deleted, and the
    foreign key refused the whole delete. The other practice's counts stay exact."""
    kept = await create_practice("Staying Clinic")
    _, kept_token = await create_staff(kept.id, "Front desk")
    doomed = await create_practice("Closing Clinic")
    _, doomed_token = await create_staff(doomed.id, "Closing desk")
    for practice_id, token in ((kept.id, kept_token), (doomed.id, doomed_token)):
        ids = [pk(await create_patient(api, token, n=n)) for n in range(1, 4)]
        enabled = await api.gql(ENABLE, {"ids": [str(i) for i in ids]}, token)
        assert "errors" not in enabled, enabled
        # open links (L buckets) and a staff-set password (an S bucket) in both
        sent = await api.gql(SEND, {"ids": [str(i) for i in ids[:2]]}, token)
        assert "errors" not in sent, sent
        who = {"pid": str(ids[2]), "u": f"user{practice_id}", "p": STAFF_PASSWORD}
        issued = await api.gql(SET_CREDENTIALS, who, token)
        assert issued["data"]["setCredentials"]["userErrors"] == [], issued
    conn = connections.get("default")
    rows = await conn.execute_query_dict(
        "SELECT COUNT(*) AS n FROM patient_status_expiry WHERE practice_id = "
        + ("$1" if BACKEND == "postgres" else "?"),
        [doomed.id],
    )
    assert int(rows[0]["n"]) >= 2  # the doomed practice has buckets to lose

    await conn.execute_query(
        "DELETE FROM practice WHERE id = " + ("$1" if BACKEND == "postgres" else "?"),
        [doomed.id],
    )

    # link_token has no key on its practice (migration 0022): its rows go with their
    # patients' cascade, so none may be left naming the deleted practice.
    for table in ("patient", "link_token", "patient_status_count", "patient_status_expiry"):
        left = await conn.execute_query_dict(
            f"SELECT COUNT(*) AS n FROM {table} WHERE practice_id = "  # noqa: S608
            + ("$1" if BACKEND == "postgres" else "?"),
            [doomed.id],
        )
        assert int(left[0]["n"]) == 0, table
    await assert_exact(api, {kept.id: kept_token}, filters=True)
