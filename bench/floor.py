"""graphql-core's own floor for an Onboarding page (issue 15, item 2).

``python -m bench.floor [--rounds 300]``

A bare graphql-core schema with the page's shape (built from SDL, default resolvers
reading dicts, no Strawberry, no extensions, no I/O) executes ``bench.workload``'s
Onboarding query over 50 ready rows, parsed and validated once. The CPU per execution is
the least any graphql-core server pays per page for completing ~900 values; compare it
with ``bench.page_cpu``'s service - reference difference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

from graphql import build_schema, execute, parse, validate

from bench.workload import ONBOARDING_QUERY

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


if __name__ == "__main__":
    main()
