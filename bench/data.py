"""Build a realistic set of practices for the benchmark, in bulk, and describe it.

``python -m bench.data --database-url URL --patients N --out plan.json`` drops and
recreates the benchmark database (never any other), then:

- 20 practices of uneven size (two large groups of 22% each, the rest evenly: a 100,000
  patient run has two practices of 22,000 and eighteen of about 3,100), one staff user
  each (``onboarding.admin.create_staff``; the bearer tokens go into the plan);
- patients from ``onboarding.demo.generate_patients`` (80% with email, a few shared
  family addresses, mixed chart statuses, about 70% of active charts enabled) inserted
  with ``insert_patients`` (bulk);
- accounts for about 40% of all patients with ``add_accounts`` (80% chose their own
  password, some logged in; the rest were set by staff);
- links in bulk: outstanding, expired, revoked, undeliverable and used ones, older
  superseded links behind some, and ``patient.last_link_id`` pointed at the newest, so
  every PortalStatus occurs;
- ``VACUUM ANALYZE`` on PostgreSQL (what autovacuum does shortly after a load: statistics,
  and the visibility map that lets counts use index-only scans).

The plan (JSON) holds what the load generators need: tokens, practice sizes, patient
ids for cursors, invitable ids for the bulk invitation, targets for setCredentials.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import require_loopback, sqlite_path, write_json

N_PRACTICES = 20
LARGE_SHARE = 0.22  # each of the two large practices
ACCOUNT_SHARE = 0.40  # of all patients


def practice_sizes(total: int, practices: int = N_PRACTICES, layout: str = "groups") -> list[int]:
    """``groups``: two large groups of 22% each, the rest even. ``one-large``: one practice
    of a quarter of all patients (250,000 of 1,000,000, issue 15), the rest even."""
    larges = [round(total * LARGE_SHARE)] * 2 if layout == "groups" else [round(total * 0.25)]
    rest = total - sum(larges)
    others = practices - len(larges)
    small, extra = divmod(rest, others)
    return larges + [small + (1 if i < extra else 0) for i in range(others)]


async def reset_postgres(url: str) -> None:
    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or "bench" not in name:
        raise SystemExit(f"the benchmark database name must contain 'bench' (got {name!r})")
    last_error: Exception | None = None
    for maintenance in ("postgres", "template1", "test"):
        admin_url = urlunsplit(parts._replace(path="/" + maintenance))
        try:
            conn = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
        except (OSError, asyncpg.PostgresError) as exc:
            last_error = exc
            continue
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return
    raise SystemExit(f"cannot reach PostgreSQL to create {name!r}: {last_error}")


def reset_sqlite(url: str) -> None:
    path = Path(sqlite_path(url))
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)


def _digest() -> str:
    return hashlib.sha256(os.urandom(24)).hexdigest()


async def add_links(practice_id: int, staff_id: int, rng: random.Random) -> Counter[str]:
    """Links in mixed states for one practice, in two bulk inserts (older, then newest),
    then one statement pointing each patient at its newest link."""
    from tortoise import connections

    from core.clock import utcnow
    from models import DeliveryStatus, LinkPurpose, LinkToken, Patient, PortalAccount, RevokeReason

    now = utcnow()
    patients = await Patient.filter(practice_id=practice_id, email__not_isnull=True).values(
        "id", "email", "portal_enabled", "chart_status"
    )
    origins = dict(
        await PortalAccount.filter(patient__practice_id=practice_id).values_list(
            "patient_id", "password_origin"
        )
    )
    older: list[LinkToken] = []
    newest: list[LinkToken] = []
    kinds: Counter[str] = Counter()

    def link(pid: int, email: str, created_ago: timedelta, **state: Any) -> LinkToken:
        created = now - created_ago
        return LinkToken(
            practice_id=practice_id,
            patient_id=pid,
            digest=_digest(),
            purpose=state.pop("purpose", LinkPurpose.INVITATION),
            sent_to=email,
            created_by_id=staff_id,
            created_at=created,
            expires_at=created + timedelta(hours=24),
            delivery_status=state.pop("delivery_status", DeliveryStatus.SENT),
            **state,
        )

    for p in patients:
        pid, email = p["id"], p["email"]
        origin = origins.get(pid)
        r = rng.random()
        if not p["portal_enabled"]:
            if r < 0.10:  # invited once, then access was disabled
                kinds["revoked_disabled"] += 1
                newest.append(
                    link(
                        pid,
                        email,
                        timedelta(days=rng.randint(30, 400)),
                        revoked_at=now - timedelta(days=rng.randint(1, 29)),
                        revoke_reason=RevokeReason.PORTAL_DISABLED,
                    )
                )
            continue
        if origin == "patient":
            if r < 0.6:  # redeemed an invitation
                ago = timedelta(days=rng.randint(2, 400), minutes=rng.randint(0, 1440))
                kinds["used"] += 1
                newest.append(
                    link(
                        pid, email, ago, used_at=now - ago + timedelta(minutes=rng.randint(1, 600))
                    )
                )
            continue
        if origin == "staff":
            if r < 0.3:
                kinds["expired"] += 1
                newest.append(link(pid, email, timedelta(days=rng.randint(8, 200))))
            continue
        if rng.random() < 0.2:  # an older link, superseded by the newest one
            older.append(
                link(
                    pid,
                    email,
                    timedelta(days=rng.randint(30, 300)),
                    revoked_at=now - timedelta(days=rng.randint(2, 29)),
                    revoke_reason=RevokeReason.SUPERSEDED,
                )
            )
            kinds["superseded"] += 1
        if r < 0.35:  # outstanding
            kinds["outstanding"] += 1
            newest.append(
                link(
                    pid,
                    email,
                    timedelta(minutes=rng.randint(1, 20 * 60)),
                    delivery_status=DeliveryStatus.SENT
                    if rng.random() < 0.9
                    else DeliveryStatus.QUEUED,
                )
            )
        elif r < 0.55:
            kinds["expired"] += 1
            newest.append(link(pid, email, timedelta(days=rng.randint(2, 120))))
        elif r < 0.60:
            kinds["undeliverable"] += 1
            newest.append(
                link(
                    pid,
                    email,
                    timedelta(hours=rng.randint(1, 200)),
                    delivery_status=DeliveryStatus.FAILED,
                    delivery_detail="550 5.1.1 mailbox unavailable",
                    revoked_at=now - timedelta(minutes=rng.randint(1, 100)),
                    revoke_reason=RevokeReason.UNDELIVERABLE,
                )
            )
        elif r < 0.65:
            kinds["self_service_expired"] += 1
            newest.append(
                link(
                    pid,
                    email,
                    timedelta(days=rng.randint(1, 50)),
                    purpose=LinkPurpose.SELF_SERVICE,
                )
            )
    for rows in (older, newest):
        if rows:
            await LinkToken.bulk_create(rows, batch_size=1000)
    conn = connections.get("default")
    mark = "?" if conn.capabilities.dialect == "sqlite" else "$1"
    # Set-based: one grouped pass over the practice's links, joined to the patients that
    # have any. The correlated form (a MAX subquery for every patient of the practice,
    # also rewriting the rows of patients with no link) ran 16 minutes for the
    # 250,000-patient practice on the shared machine.
    await conn.execute_query(
        "UPDATE patient SET last_link_id = m.id FROM (SELECT l.patient_id, MAX(l.id) AS id"
        f" FROM link_token l WHERE l.practice_id = {mark} GROUP BY l.patient_id) m"
        " WHERE patient.id = m.patient_id",
        [practice_id],
    )
    return kinds


async def build(url: str, total: int, seed: int, layout: str = "groups") -> dict[str, Any]:
    from tortoise import connections

    from core.settings import Settings
    from models import ChartStatus, Patient, PortalAccount
    from models.database import connect, disconnect, migrate
    from onboarding.admin import create_practice, create_staff
    from onboarding.demo import add_accounts, generate_patients, insert_patients
    from onboarding.status import PortalStatus, status_sql

    if url.startswith("sqlite"):
        reset_sqlite(url)
    else:
        await reset_postgres(url)
    await migrate(url)
    await connect(url)
    rng = random.Random(seed)
    started = time.perf_counter()
    practices: list[dict[str, Any]] = []
    link_kinds: Counter[str] = Counter()
    try:
        for index, size in enumerate(practice_sizes(total, layout=layout)):
            practice = await create_practice(f"Bench Practice {index + 1:02d}")
            staff, token = await create_staff(practice.id, "Bench Front Desk")
            await insert_patients(
                generate_patients(practice.id, size, seed=seed * 1000 + index, chart_prefix="B")
            )
            enabled = await Patient.filter(practice_id=practice.id, portal_enabled=True).count()
            share = min(1.0, ACCOUNT_SHARE * size / max(enabled, 1))
            accounts = await add_accounts(practice.id, share, seed=seed * 1000 + index)
            link_kinds += await add_links(practice.id, staff.id, rng)
            practices.append(
                {
                    "id": practice.id,
                    "staff_id": staff.id,
                    "token": token,
                    "size": size,
                    "accounts": accounts,
                }
            )
            print(
                f"  practice {index + 1:2d}: {size:6d} patients, {accounts:6d} accounts",
                file=sys.stderr,
            )
        conn = connections.get("default")
        if conn.capabilities.dialect != "sqlite":
            await conn.execute_script("VACUUM ANALYZE")
        load_seconds = time.perf_counter() - started

        # What the load generators need.
        settings = Settings()
        invitable_statuses = [ChartStatus.ACTIVE.value, ChartStatus.PROSPECTIVE.value]
        for p in practices:
            rows = await Patient.filter(practice_id=p["id"]).values_list(
                "id", "portal_enabled", "chart_status", "email", "last_name_key"
            )
            ids = [r[0] for r in rows]
            p["cursor_ids"] = rng.sample(ids, min(len(ids), 400))
            # The sort keys of those rows: a deep page's cursor is the sealed key.
            keys = dict(
                await Patient.filter(id__in=p["cursor_ids"]).values_list("id", "last_name_key")
            )
            firsts = dict(
                await Patient.filter(id__in=p["cursor_ids"]).values_list("id", "first_name_key")
            )
            p["cursor_keys"] = [[keys[i], firsts[i], i] for i in p["cursor_ids"]]
            p["search_terms"] = sorted({r[4][:3] for r in rows if len(r[4]) >= 3})[:60]
            p["invitable"] = [
                r[0] for r in rows if r[1] and r[2] in invitable_statuses and r[3] is not None
            ]
            p["credential_targets"] = rng.sample(
                [r[0] for r in rows if r[1] and r[2] in invitable_statuses],
                min(40, len(rows)),
            )
        # Status mix over all patients, from the service's own rule.
        mark = (lambda n: f"?{n}") if conn.capabilities.dialect == "sqlite" else (lambda n: f"${n}")
        from core.clock import utcnow

        now = utcnow()
        sql = (
            f"SELECT s AS status, COUNT(*) AS n FROM (SELECT {status_sql(mark(1), mark(2))} AS s"
            " FROM patient p) x GROUP BY s"
        )
        ttl = timedelta(days=settings.temporary_password_ttl_days)
        mix = {
            r["status"]: int(r["n"]) for r in await conn.execute_query_dict(sql, [now, now - ttl])
        }
        with_email = await Patient.filter(email__not_isnull=True).count()
        accounts_total = await PortalAccount.all().count()
        assert set(mix) <= {s.value for s in PortalStatus}
    finally:
        await disconnect()
    return {
        "database_url": url,
        "patients": total,
        "seed": seed,
        "layout": layout,
        "load_seconds": round(load_seconds, 1),
        "with_email": with_email,
        "accounts": accounts_total,
        "status_mix": mix,
        "link_kinds": dict(link_kinds),
        "practices": practices,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--layout",
        choices=["groups", "one-large"],
        default="groups",
        help="groups: two practices of 22%% each; one-large: one practice of 25%%",
    )
    args = parser.parse_args()
    require_loopback(args.database_url)
    plan = asyncio.run(build(args.database_url, args.patients, args.seed, args.layout))
    write_json(args.out, plan)
    total = plan["patients"]
    print(
        f"  {total} patients in {plan['load_seconds']} s; email {plan['with_email'] / total:.0%},"
        f" accounts {plan['accounts'] / total:.0%}; statuses {plan['status_mix']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
