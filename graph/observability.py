"""Probes and metrics: ``/healthz`` (liveness: the process answers), ``/readyz`` (this
process can serve: database reachable and migrated, Redis reachable when configured, the
outbox moving) and ``/metrics`` (Prometheus text; see ``core.metrics`` for several
processes). None of them is meant for the internet: the TLS proxy routes only /graphql
(and the patient app), see docs/deploy.md."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import FieldNode, OperationDefinitionNode
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType
from tortoise import connections

from core import metrics
from core.clock import utcnow

if TYPE_CHECKING:
    from graph.services import Services

PROBE_TIMEOUT_SECONDS = 2.0
MIGRATIONS = sorted(
    p.stem for p in (Path(__file__).parents[1] / "models" / "migrations").glob("[0-9]*.py")
)


class RequestMetrics(SchemaExtension):
    """Counts each GraphQL operation by its root fields (bounded by the schema, unlike
    client-chosen operation names) and outcome: ``ok``, ``user_error`` (a payload with
    userErrors), ``error`` (GraphQL errors: refused or failed)."""

    def on_execute(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        ctx = self.execution_context
        operation = _root_fields(ctx.graphql_document) or "invalid"
        result = ctx.result
        if result is None or result.errors:
            outcome = "error"
        elif ctx.operation_type is OperationType.MUTATION and _has_user_errors(result.data):
            # userErrors live in mutation payloads only: a query's answer (an Onboarding
            # page: ~900 values) is not walked (issue 15).
            outcome = "user_error"
        else:
            outcome = "ok"
        metrics.REQUESTS.labels(operation=operation, outcome=outcome).inc()
        metrics.REQUEST_SECONDS.labels(operation=operation).observe(time.perf_counter() - started)


def _root_fields(document: Any) -> str:
    if document is None:
        return ""
    names: set[str] = set()
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    names.add(selection.name.value)
    return ",".join(sorted(names))[:200]


def _has_user_errors(value: Any, depth: int = 0) -> bool:
    if depth > 4:
        return False
    if isinstance(value, dict):
        if value.get("userErrors"):
            return True
        return any(_has_user_errors(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_has_user_errors(v, depth + 1) for v in value[:50])
    return False


async def _database() -> tuple[str, str]:
    conn = connections.get("default")
    await conn.execute_query("SELECT 1")
    rows = await conn.execute_query_dict(
        "SELECT name FROM tortoise_migrations WHERE app = 'models'"
    )
    applied = {r["name"] for r in rows}
    missing = [m for m in MIGRATIONS if m not in applied]
    return "ok", ("ok" if not missing else "missing " + ", ".join(missing))


async def _outbox_lag() -> float:
    """Seconds the most overdue pending message has waited past its due time (0 if none).
    A leased row's due time is its lease end, so a busy worker does not count."""
    conn = connections.get("default")
    rows = await conn.execute_query_dict(
        "SELECT MIN(next_attempt_at) AS due FROM outbox_message WHERE status = 'pending'"
    )
    due = _aware(rows[0]["due"] if rows else None)
    if due is None:
        return 0.0
    return max(0.0, (utcnow() - due).total_seconds())


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands back text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def readiness(services: Services) -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        checks["database"], checks["migrations"] = await asyncio.wait_for(
            asyncio.ensure_future(_database()), PROBE_TIMEOUT_SECONDS
        )
    except Exception as exc:  # noqa: BLE001 - the probe reports, never raises
        checks["database"] = f"unreachable ({type(exc).__name__})"
        checks["migrations"] = "unknown"
    if services.settings.redis_url:
        checks["redis"] = "ok" if await services.limiter.ping() else "unreachable"
    else:
        checks["redis"] = "not configured"
    if checks["database"] == "ok":
        try:
            lag = await asyncio.wait_for(
                asyncio.ensure_future(_outbox_lag()), PROBE_TIMEOUT_SECONDS
            )
        except Exception as exc:  # noqa: BLE001
            checks["outbox"] = f"unknown ({type(exc).__name__})"
        else:
            limit = services.settings.ready_outbox_max_lag_seconds
            checks["outbox"] = "ok" if lag <= limit else f"stuck: a message is {lag:.0f} s overdue"
    else:
        checks["outbox"] = "unknown"
    ready = all(v in ("ok", "not configured") for v in checks.values())
    return ready, checks


async def readyz(request: Request) -> Response:
    ready, checks = await readiness(request.app.state.services)
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def healthz(_: Request) -> Response:
    # Liveness only: a process that answers is alive. Dependencies are /readyz's job,
    # so a database outage takes processes out of rotation instead of restarting them.
    return JSONResponse({"status": "ok"})


_KIND = re.compile(r"^[a-z_]{1,32}$")
# Reported as 0 when nothing of the kind waits, so a drained queue reads 0, not stale.
KINDS = ("invitation", "self_service", "username_reminder", "password_changed", "email_changed")


async def metrics_endpoint(request: Request) -> Response:
    try:
        rows = await asyncio.wait_for(
            asyncio.ensure_future(
                connections.get("default").execute_query_dict(
                    "SELECT kind, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox_message"
                    " WHERE status = 'pending' GROUP BY kind"
                )
            ),
            PROBE_TIMEOUT_SECONDS,
        )
    except Exception:  # noqa: BLE001 - metrics still answer without the database
        rows = None
    if rows is not None:
        now = utcnow()
        seen = set()
        for row in rows:
            kind = row["kind"] if _KIND.match(str(row["kind"])) else "other"
            oldest = _aware(row["oldest"])
            metrics.OUTBOX_DEPTH.labels(kind=kind).set(row["n"])
            metrics.OUTBOX_OLDEST_SECONDS.labels(kind=kind).set(
                (now - oldest).total_seconds() if oldest else 0
            )
            seen.add(kind)
        for kind in KINDS:
            if kind not in seen:
                metrics.OUTBOX_DEPTH.labels(kind=kind).set(0)
                metrics.OUTBOX_OLDEST_SECONDS.labels(kind=kind).set(0)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
