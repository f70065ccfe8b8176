"""graphql-core's own floor for an Onboarding page (issue 15, item 2), and the service's
execution of the same page without I/O.

``python -m bench.floor [--rounds 300]``

A bare graphql-core schema with the page's shape (built from SDL, default resolvers
reading dicts, no Strawberry, no extensions, no I/O) executes ``bench.workload``'s
Onboarding query over 50 ready rows, parsed and validated once. The CPU per execution is
the least any graphql-core server pays per page for completing ~900 values; compare it
with ``bench.page_cpu``'s service - reference difference.

Then the service's own types (``graph.types.onboarding``: the connection built by
``connection_from_page`` from 50 ``PatientRow``) in a Strawberry schema whose root field
returns that ready connection, executed as Strawberry executes (graphql-core's
``execute`` with Strawberry's execution context), alternating: with graphql-core's
generic completion of every field, and with ``graph.execution.FastExecutor``, the
service's. Answers are checked equal. Last, building the connection itself (``Patient``
objects, sealed cursors) per page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from typing import Any

import strawberry
from graphql import build_schema, execute, parse, validate

from bench.workload import ONBOARDING_QUERY
from graph.types.onboarding import OnboardingFilter, PatientConnection

SDL = """
scalar Date
scalar DateTime
enum PortalStatus { DISABLED NO_EMAIL NOT_INVITED INVITED INVITATION_EXPIRED CREDENTIALS_ISSUED ACTIVE }
enum ChartStatus { ACTIVE INACTIVE PROSPECTIVE }
enum DeliveryStatus { QUEUED SENT FAILED }
input OnboardingFilter { status: [PortalStatus!] search: String hasEmail: Boolean }
type PortalAccount { username: String! mustChangePassword: Boolean! lastLoginAt: DateTime locked: Boolean! }
type Invitation { sentTo: String! sentAt: DateTime! expiresAt: DateTime! usedAt: DateTime
  deliveryStatus: DeliveryStatus! }
type Patient { id: ID! chartNumber: String! firstName: String! lastName: String!
  dateOfBirth: Date! email: String zipCode: String chartStatus: ChartStatus!
  portalEnabled: Boolean! portalStatus: PortalStatus! emailSharedWith: Int!
  account: PortalAccount lastInvitation: Invitation }
type PatientEdge { cursor: String! node: Patient! }
type PageInfo { endCursor: String hasNextPage: Boolean! }
type StatusCount { status: PortalStatus! count: Int! }
type PatientConnection { edges: [PatientEdge!]! pageInfo: PageInfo! totalCount: Int!
  statusCounts: [StatusCount!]! }
type Query { onboarding(first: Int, after: String, filter: OnboardingFilter): PatientConnection! }
"""


def data() -> dict:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    edges = []
    for i in range(50):
        edges.append(
            {
                "cursor": "c" * 80,
                "node": {
                    "id": f"UGF0aWVudDo{i}",
                    "chartNumber": f"B{i:06d}",
                    "firstName": "Maria",
                    "lastName": "Smith",
                    "dateOfBirth": now.date(),
                    "email": "maria@example.org",
                    "zipCode": "02139",
                    "chartStatus": "ACTIVE",
                    "portalEnabled": True,
                    "portalStatus": "INVITED",
                    "emailSharedWith": 0,
                    "account": {
                        "username": "maria",
                        "mustChangePassword": False,
                        "lastLoginAt": now,
                        "locked": False,
                    },
                    "lastInvitation": {
                        "sentTo": "maria@example.org",
                        "sentAt": now,
                        "expiresAt": now,
                        "usedAt": None,
                        "deliveryStatus": "SENT",
                    },
                },
            }
        )
    return {
        "onboarding": {
            "edges": edges,
            "pageInfo": {"endCursor": "c", "hasNextPage": True},
            "totalCount": 1,
            "statusCounts": [{"status": "ACTIVE", "count": 1}],
        }
    }


_READY: list[Any] = []


@strawberry.type
class FloorQuery:
    """The service's onboarding field, answering a connection built beforehand."""

    @strawberry.field
    async def onboarding(
        self,
        first: int | None = None,
        after: str | None = None,
        filter: OnboardingFilter | None = None,
    ) -> PatientConnection:
        return _READY[-1]


def service_rows() -> list[Any]:
    from onboarding.listing import AccountRow, InvitationRow, PatientRow
    from onboarding.status import PortalStatus

    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    rows = []
    for i in range(50):
        rows.append(
            PatientRow(
                id=1000 + i,
                practice_id=7,
                chart_number=f"B{i:06d}",
                first_name="Maria",
                last_name="Smith",
                date_of_birth=now.date(),
                email="maria@example.org",
                zip_code="02139",
                chart_status="ACTIVE",
                portal_enabled=True,
                portal_status=PortalStatus.INVITED,
                email_shared_with=0,
                account=AccountRow("maria", False, now, False) if i % 3 else None,
                last_invitation=InvitationRow(
                    id=5000 + i,
                    patient_id=1000 + i,
                    sent_to="maria@example.org",
                    sent_at=now,
                    expires_at=now,
                    used_at=None,
                    revoked_at=None,
                    delivery_status="SENT",
                    purpose="invitation",
                )
                if i % 2
                else None,
                last_name_key="smith",
                first_name_key=f"maria{i}",
            )
        )
    return rows


def service_page(rounds: int) -> None:
    """The service's types executed with generic completion and with FastExecutor."""
    import asyncio

    from strawberry.execution.is_awaitable import optimized_is_awaitable
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    from core.sealing import Sealer
    from graph.cursors import Cursors
    from graph.execution import FastExecutor
    from graph.schema import SCALARS
    from graph.types.common import PageRequest
    from graph.types.onboarding import connection_from_page
    from onboarding.listing import Page
    from onboarding.status import PortalStatus

    rows = service_rows()
    cursors = Cursors(Sealer("x" * 32, "cursor"), 7)
    counts = dict.fromkeys(PortalStatus, 3)

    def build() -> PatientConnection:
        return connection_from_page(
            None,  # type: ignore[arg-type]  (counts are known: no reader needed)
            cursors,
            None,
            PageRequest(50, None, False),
            None,
            Page(rows=rows, has_more=True, counts=counts),
        )

    connection = build()

    _READY.append(connection)
    schema = strawberry.Schema(query=FloorQuery, scalar_overrides=SCALARS)._schema
    document = parse(ONBOARDING_QUERY)
    assert not validate(schema, document)
    executors = {"generic": StrawberryGraphQLCoreExecutionContext, "fast": FastExecutor}
    times: dict[str, list[float]] = {name: [] for name in executors}

    async def run() -> None:
        for n in range(rounds + 20):
            answers = {}
            for name, executor in executors.items():
                started = time.process_time()
                result = await execute(  # type: ignore[misc]
                    schema,
                    document,
                    variable_values={"first": 50},
                    is_awaitable=optimized_is_awaitable,
                    executor_class=executor,
                )
                if n >= 20:
                    times[name].append(time.process_time() - started)
                assert not result.errors, result.errors
                answers[name] = result.data
            assert answers["generic"] == answers["fast"]

    asyncio.run(run())
    generic = statistics.mean(times["generic"]) * 1000
    fast = statistics.mean(times["fast"]) * 1000
    print(
        f"the service's types in Strawberry, the same page over a ready connection, {rounds}"
        f" times each: generic completion {generic:.2f} ms, FastExecutor {fast:.2f} ms CPU per"
        f" page ({generic / fast:.1f}x)"
    )
    build_times = []
    for n in range(rounds + 20):
        started = time.process_time()
        build()
        if n >= 20:
            build_times.append(time.process_time() - started)
    print(
        f"building that connection (50 Patient objects, 50 sealed cursors):"
        f" {statistics.mean(build_times) * 1000:.2f} ms CPU per page"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    schema = build_schema(SDL)
    schema.type_map["DateTime"].serialize = lambda v: v.isoformat()  # type: ignore[attr-defined]
    schema.type_map["Date"].serialize = lambda v: v.isoformat()  # type: ignore[attr-defined]
    document = parse(ONBOARDING_QUERY)
    assert not validate(schema, document)
    root = data()
    times = []
    for n in range(args.rounds + 20):
        started = time.process_time()
        result = execute(schema, document, root_value=root, variable_values={"first": 50})
        if n >= 20:
            times.append(time.process_time() - started)
        assert not result.errors, result.errors  # type: ignore[union-attr]
    print(
        f"bare graphql-core, Onboarding page of 50 rows, executed {args.rounds} times:"
        f" {statistics.mean(times) * 1000:.2f} ms CPU per page (median"
        f" {statistics.median(times) * 1000:.2f} ms)"
    )
    service_page(args.rounds)


if __name__ == "__main__":
    main()
