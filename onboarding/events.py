"""Events for the EMR (SPEC 8.7): the transactional outbox of portal-state changes.

The unit of work calls :func:`emit` inside the transaction that makes a change (from
``PatientChange.record``/``record_many``, which map audit actions to event types, and
from a few explicit emits where an event has no audit twin). One statement writes the
events of every patient of the change, with the status each patient has *after* the
change (the same SQL rule the Onboarding Tool uses, :func:`onboarding.status.status_sql`),
and the webhook deliveries of every endpoint of the practice that asked for the type.
A 10,000-patient invitation therefore stays a handful of set-based statements.

After commit the unit of work announces the new event ids (:func:`announce`): the
webhook worker wakes, and the live list (``graph.live``) fans them out.

An event never carries a token, password, link or email address: only the practice,
the patient, the type, the new portal status, the per-patient sequence and the time.
"""

# ruff: noqa: S608 (SQL assembled from constants in this file; values are bound parameters)
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from tortoise import connections

from core.clock import utcnow
from core.settings import Settings
from models import WebhookEndpoint
from models.bulk import id_list, id_list_value
from onboarding.sql import Params
from onboarding.status import status_sql

PORTAL_ENABLED = "portal.enabled"
PORTAL_DISABLED = "portal.disabled"
INVITATION_SENT = "invitation.sent"
INVITATION_DELIVERED = "invitation.delivered"
INVITATION_FAILED = "invitation.failed"
INVITATION_EXPIRED = "invitation.expired"
ACCOUNT_ACTIVATED = "account.activated"
ACCOUNT_PASSWORD_CHANGED = "account.password_changed"
ACCOUNT_LOCKED = "account.locked"
ACCOUNT_UNLOCKED = "account.unlocked"
PATIENT_UPDATED = "patient.updated"

EVENT_TYPES = (
    PORTAL_ENABLED,
    PORTAL_DISABLED,
    INVITATION_SENT,
    INVITATION_DELIVERED,
    INVITATION_FAILED,
    INVITATION_EXPIRED,
    ACCOUNT_ACTIVATED,
    ACCOUNT_PASSWORD_CHANGED,
    ACCOUNT_LOCKED,
    ACCOUNT_UNLOCKED,
    PATIENT_UPDATED,
)

# Audit actions that are portal-state changes, and the event each one is. Actions not
# listed (failed logins, logouts, refused redemptions...) change no portal state.
# ``link.redeemed`` and ``password.changed`` become ``account.activated`` when the
# change made the account active (the unit of work knows; see PatientChange).
EVENT_OF_AUDIT_ACTION = {
    "portal.enabled": PORTAL_ENABLED,
    "portal.disabled": PORTAL_DISABLED,
    "invitation.sent": INVITATION_SENT,
    "invitation.reminder_sent": INVITATION_SENT,
    "invitation.undeliverable": INVITATION_FAILED,
    "link.redeemed": ACCOUNT_PASSWORD_CHANGED,
    "password.changed": ACCOUNT_PASSWORD_CHANGED,
    "credentials.set": ACCOUNT_PASSWORD_CHANGED,
    "login.locked_out": ACCOUNT_LOCKED,
    "patient.updated": PATIENT_UPDATED,
}

# The temporary-password lifetime enters the status rule; the unit of work has no
# Settings, so the process that owns the settings sets it at start-up.
_temporary_password_ttl = timedelta(days=7)


def configure(settings: Settings) -> None:
    global _temporary_password_ttl
    _temporary_password_ttl = timedelta(days=settings.temporary_password_ttl_days)


async def _endpoints_for(practice_id: int, event_type: str) -> list[int]:
    # Disabled endpoints too: their deliveries wait (the worker claims only enabled
    # endpoints' rows) and go out when the endpoint is enabled again (docs/events.md).
    rows = await WebhookEndpoint.filter(practice_id=practice_id).values_list(
        "id", "event_types"
    )
    return [endpoint_id for endpoint_id, types in rows if not types or event_type in types]


async def emit(event_type: str, patient_ids: Sequence[int], practice_id: int) -> list[int]:
    """Write one ``event_type`` event per patient (of ``practice_id`` only) and its
    webhook deliveries, in the caller's transaction, under the caller's patient locks
    (which make ``seq`` the commit order). Returns the new event ids."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    ids = sorted(set(patient_ids))
    if not ids:
        return []
    endpoints = await _endpoints_for(practice_id, event_type)
    conn = connections.get("default")
    params = Params(conn.capabilities.dialect)
    dialect = params.dialect
    now = utcnow()
    at = params(now)
    status = status_sql(at, params(now - _temporary_password_ttl))
    kind = params(event_type)
    practice = params(practice_id)
    mark = params(id_list_value(dialect, ids))
    # Each patient's last seq from one grouped read over the same ids, not a subquery
    # per patient: the planner costs that subquery on the table's last statistics, and
    # just after a first bulk invitation filled a table it believed empty it scanned the
    # whole table once per patient (0.42 s of a 10,000-patient invitation).
    insert_events = (
        "INSERT INTO portal_event (practice_id, patient_id, seq, type, portal_status,"
        " occurred_at) SELECT p.practice_id, p.id, COALESCE(latest.seq, 0) + 1,"
        f" {kind}, {status}, {at} FROM patient p LEFT JOIN (SELECT e.patient_id,"
        " MAX(e.seq) AS seq FROM portal_event e"
        f" WHERE {id_list(dialect, 'e.patient_id', mark)} GROUP BY e.patient_id) latest"
        f" ON latest.patient_id = p.id WHERE {id_list(dialect, 'p.id', mark)}"
        f" AND p.practice_id = {practice}"
    )
    deliveries = (
        "INSERT INTO webhook_delivery (endpoint_id, event_id, practice_id, patient_id,"
        " status, attempts, next_attempt_at, created_at)"
    )
    if dialect == "postgres":
        sql = f"WITH ev AS ({insert_events} RETURNING id, patient_id)"
        if endpoints:
            targets = params(endpoints)
            sql += (
                f", d AS ({deliveries} SELECT w.id, ev.id, {practice}, ev.patient_id,"
                f" 'pending', 0, {at}, {at} FROM ev CROSS JOIN unnest({targets}::int[])"
                " AS w(id))"
            )
        rows = await conn.execute_query_dict(sql + " SELECT id FROM ev", params.values)
        written = [row["id"] for row in rows]
        # Tell every server process (the live list, SPEC 8.9). NOTIFY is transactional:
        # listeners hear it at commit, never for a rolled-back change, and can read the
        # rows when they do.
        await conn.execute_query(
            f"SELECT pg_notify('{NOTIFY_CHANNEL}', n) FROM unnest($1::text[]) AS n",
            [notify_payloads(practice_id, written)],
        )
        return written
    # SQLite: one writer at a time, so the new rows are those above the highest id
    # before the insert.
    _, before_rows = await conn.execute_query("SELECT COALESCE(MAX(id), 0) FROM portal_event")
    before = before_rows[0][0]
    await conn.execute_query(insert_events, params.values)
    if endpoints:
        extra = Params("sqlite")
        targets = extra(id_list_value("sqlite", endpoints))
        when = extra(now)
        floor = extra(before)
        await conn.execute_query(
            f"{deliveries} SELECT w.value, e.id, e.practice_id, e.patient_id, 'pending',"
            f" 0, {when}, {when} FROM portal_event e, json_each({targets}) w"
            f" WHERE e.id > {floor} ORDER BY e.id, w.value",
            extra.values,
        )
    _, rows = await conn.execute_query(
        "SELECT id FROM portal_event WHERE id > ? ORDER BY id", [before]
    )
    return [row[0] for row in rows]


# Whoever wants to hear of committed events at once (the webhook worker in this process,
# the live list's fan-out): called after commit with (practice id, event ids).
_listeners: set[Callable[[int, list[int]], Any]] = set()

NOTIFY_CHANNEL = "portal_events"
# A NOTIFY payload must stay under 8,000 bytes: ids travel in groups.
NOTIFY_IDS = 400


def notify_payloads(practice_id: int, event_ids: Sequence[int]) -> list[str]:
    """``practice:id,id,...`` texts, the form the live list's listeners parse."""
    return [
        f"{practice_id}:" + ",".join(str(i) for i in event_ids[start : start + NOTIFY_IDS])
        for start in range(0, len(event_ids), NOTIFY_IDS)
    ]


def parse_payload(text: str) -> tuple[int, list[int]]:
    practice, _, ids = text.partition(":")
    return int(practice), [int(i) for i in ids.split(",") if i]


def subscribe(listener: Callable[[int, list[int]], Any]) -> None:
    _listeners.add(listener)


def unsubscribe(listener: Callable[[int, list[int]], Any]) -> None:
    _listeners.discard(listener)


def announce(practice_id: int, event_ids: list[int]) -> None:
    for listener in list(_listeners):
        listener(practice_id, event_ids)
