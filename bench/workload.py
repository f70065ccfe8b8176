"""The requests the load generators replay: Onboarding Tool pages with random filters and
cursors, and staff-set passwords (argon2id hashing), built from the data plan.

Each request is one line ``<bearer token>\\t<k|c>\\t<JSON body>`` so that both wrk's Lua
script and the Python loader can replay them without a JSON parser. ``c`` marks the one
request in ``CLOSE_EVERY`` that asks the server to close the connection afterwards: the
client reconnects, as browsers and proxies do now and then, and a new connection goes
to whichever uvicorn worker accepts it first (without that churn, connections opened
all at once at the start of a run can all land on one worker)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

STATUSES = [
    "DISABLED",
    "NO_EMAIL",
    "NOT_INVITED",
    "INVITED",
    "INVITATION_EXPIRED",
    "CREDENTIALS_ISSUED",
    "ACTIVE",
]

# What the Onboarding Tool asks for: 50 rows, each with its account and last invitation,
# and the counts per status shown above the list.
ONBOARDING_QUERY = """query Onboarding($first: Int, $after: String, $filter: OnboardingFilter) {
  onboarding(first: $first, after: $after, filter: $filter) {
    edges {
      cursor
      node {
        id chartNumber firstName lastName dateOfBirth email zipCode chartStatus
        portalEnabled portalStatus emailSharedWith
        account { username mustChangePassword lastLoginAt locked }
        lastInvitation { sentTo sentAt expiresAt usedAt deliveryStatus }
      }
    }
    pageInfo { endCursor hasNextPage }
    totalCount
    statusCounts { status count }
  }
}"""

SET_CREDENTIALS_MUTATION = """mutation SetCredentials($input: SetCredentialsInput!) {
  setCredentials(input: $input) {
    account { username mustChangePassword }
    userErrors { field code message }
  }
}"""

SEND_INVITATION_MUTATION = """mutation Send($input: SendInvitationInput!) {
  sendInvitation(input: $input) {
    results { requestedId invitation { sentTo expiresAt } userErrors { code } }
    userErrors { code }
  }
}"""

PAGE_SIZE = 50
CLOSE_EVERY = 25


def cursor_for(practice: dict[str, Any], key: list[Any]) -> str:
    """A cursor the service opens: the row's sort key sealed for the practice's list
    with the benchmark's fixed secret key (graph/cursors.py)."""
    from bench.servers import BENCH_SECRET_KEY
    from core.sealing import Sealer

    return Sealer(BENCH_SECRET_KEY, "cursor").seal(f"onboarding|{practice['id']}", list(key))


def random_filter(rng: random.Random, practice: dict[str, Any]) -> dict[str, Any] | None:
    r = rng.random()
    if r < 0.30:
        return None
    if r < 0.50:
        return {"status": rng.sample(STATUSES, rng.choice([1, 1, 2, 3]))}
    if r < 0.65:
        return {"hasEmail": rng.random() < 0.7}
    terms = practice["search_terms"] or ["smi"]
    if r < 0.85:
        return {"search": rng.choice(terms)}
    return {"status": rng.sample(STATUSES, rng.choice([1, 2])), "search": rng.choice(terms)}


def page_variables(rng: random.Random, practice: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = {"first": PAGE_SIZE}
    flt = random_filter(rng, practice)
    if flt is not None:
        variables["filter"] = flt
    if rng.random() < 0.5 and practice.get("cursor_keys"):
        variables["after"] = cursor_for(practice, rng.choice(practice["cursor_keys"]))
    return variables


def pick_practice(rng: random.Random, practices: list[dict[str, Any]]) -> dict[str, Any]:
    # Busier practices have more staff at the list: weight by size.
    return rng.choices(practices, weights=[p["size"] for p in practices])[0]


def page_requests(plan: dict[str, Any], count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        practice = pick_practice(rng, plan["practices"])
        body = {"query": ONBOARDING_QUERY, "variables": page_variables(rng, practice)}
        out.append((practice["token"], json.dumps(body, separators=(",", ":"))))
    return out


def credential_requests(plan: dict[str, Any], count: int, seed: int) -> list[tuple[str, str]]:
    """Staff type a username and a password by hand (argon2id hash per request). The
    same patient keeps the same username, so every request succeeds."""
    rng = random.Random(seed)
    targets = [(p, pid) for p in plan["practices"] for pid in p["credential_targets"]]
    out = []
    for n in range(count):
        practice, pid = rng.choice(targets)
        variables = {
            "input": {
                "patientId": str(pid),
                "username": f"bench{pid}",
                "password": f"Walnut-Harbor-{rng.randint(10_000, 99_999)}-Lantern-{n}",
            }
        }
        body = {"query": SET_CREDENTIALS_MUTATION, "variables": variables}
        out.append((practice["token"], json.dumps(body, separators=(",", ":"))))
    return out


def write_requests(path: Path, requests: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for n, (token, body) in enumerate(requests):
            assert "\t" not in body and "\n" not in body
            flag = "c" if n % CLOSE_EVERY == CLOSE_EVERY - 1 else "k"
            f.write(f"{token}\t{flag}\t{body}\n")
    return path


def read_requests(path: Path) -> list[tuple[str, str]]:
    """(token, body) pairs, the close flag left out."""
    out = []
    for line in path.read_text().splitlines():
        token, _, rest = line.partition("\t")
        out.append((token, rest.partition("\t")[2]))
    return out
