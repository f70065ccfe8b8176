"""Prometheus metrics (prometheus-client), shared by every process of a host.

With several uvicorn workers and ``portal mail-worker`` processes, set
``PROMETHEUS_MULTIPROC_DIR`` to one empty directory for all of them (cleared before they
start): each process writes its values there and any API process's ``/metrics`` sums
them. Without it (a single process) the default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

REQUESTS = Counter(
    "portal_graphql_requests_total",
    "GraphQL operations answered, by operation name and outcome",
    ["operation", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "portal_graphql_request_seconds",
    "GraphQL operation latency, by operation name",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_ERRORS = Counter("portal_http_server_errors_total", "Responses with a 5xx status", ["path"])
OUTBOX_DEPTH = Gauge(
    "portal_outbox_pending",
    "Outbox messages waiting to be sent, by kind (read at scrape time)",
    ["kind"],
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "portal_outbox_oldest_pending_seconds",
    "Age of the oldest message waiting to be sent, by kind (read at scrape time)",
    ["kind"],
    multiprocess_mode="mostrecent",
)
DELIVERIES = Counter(
    "portal_mail_deliveries_total", "Outbox messages settled, by outcome", ["outcome"]
)
WORKER_DB_ERRORS = Counter(
    "portal_mail_worker_database_errors_total", "Database errors met by mail dispatchers"
)
WORKER_HEARTBEAT = Gauge(
    "portal_worker_heartbeat_timestamp_seconds",
    "Unix time each background loop last went round",
    ["worker"],
    multiprocess_mode="max",
)
HASH_QUEUE = Gauge(
    "portal_password_hash_queue",
    "Password hashes waiting for or using a hashing thread",
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter(
    "portal_rate_limit_refusals_total", "Requests refused by a rate limit", ["limit"]
)
RATE_LIMIT_BACKEND_ERRORS = Counter(
    "portal_rate_limit_backend_errors_total",
    "Rate-limit checks that could not reach Redis and used the per-process fallback",
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render() -> tuple[bytes, str]:
    if multiprocess_dir():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Called by a parent for a child that exited (gunicorn-style clean-up)."""
    if multiprocess_dir():
        _multiprocess.mark_process_dead(pid)
