"""Global object ids (Relay, SPEC 8.2) and the one place ids from clients are decoded.

A global id is base64 of ``Type:number`` (the Relay convention, as graphql-relay and
Strawberry write it): unique across types, so a client's normalised store never merges a
Patient and an AuditEvent with the same row number. Clients must treat it as opaque.

Deprecated: mutation and query arguments that name a patient still accept the plain
decimal row ids this API returned before global ids; they will be refused in a later
version. Answers always carry global ids.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Iterable

import strawberry

from core.ids import global_id_text
from graph.context import Info

PATIENT = "Patient"
AUDIT_EVENT = "AuditEvent"
INVITATION = "Invitation"
PRACTICE = "Practice"
WEBHOOK_ENDPOINT = "WebhookEndpoint"
WEBHOOK_DELIVERY = "WebhookDelivery"
NODE_TYPES = (PATIENT, AUDIT_EVENT, INVITATION, PRACTICE, WEBHOOK_ENDPOINT, WEBHOOK_DELIVERY)

PATIENT_ID_DESCRIPTION = (
    "A Patient's global id. Deprecated: the plain decimal ids of earlier versions are"
    " still accepted."
)

PATIENT_IDS = (
    "Patients' global ids. Deprecated: the plain decimal ids of earlier versions are"
    " still accepted."
)


def global_id(type_name: str, pk: int) -> strawberry.ID:
    return strawberry.ID(global_id_text(type_name, pk))


def _row_number(text: str) -> int | None:
    # Ids are 32-bit: a larger number would fail in the database driver (SPEC 6).
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number < 2**31 else None


def parse_global_id(value: str) -> tuple[str, int] | None:
    """(type, row number) of a global id this service issued, else None."""
    if len(value) > 64 or not value.isascii():
        return None
    try:
        text = base64.b64decode(value, validate=True).decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        return None
    type_name, _, number = text.partition(":")
    pk = _row_number(number)
    if type_name not in NODE_TYPES or pk is None:
        return None
    return type_name, pk


def decode_id(value: str, type_name: str, *, legacy: bool = True) -> int | None:
    """The row number named by ``value``: a global id of ``type_name`` or (deprecated,
    when ``legacy``) a plain decimal id. Anything else names no row."""
    if legacy and (pk := _row_number(value)) is not None:
        return pk
    parsed = parse_global_id(value)
    if parsed is None or parsed[0] != type_name:
        return None
    return parsed[1]


def patient_pk(value: str) -> int | None:
    return decode_id(value, PATIENT)


def webhook_endpoint_pk(value: str) -> int | None:
    """Deprecated like patients' plain ids: the decimal ids endpoints had before they
    became Relay nodes are still accepted."""
    return decode_id(value, WEBHOOK_ENDPOINT)


def decode_patient_ids(info: Info, values: Iterable[str] | None) -> list[str] | None:
    """Bulk inputs: the decimal ids the workflows take. What the client sent is kept on
    the request so results can echo it as ``requestedId``; an undecodable value is passed
    on as it is and reported NOT_FOUND at its index."""
    if values is None:
        return None
    # Results come back one per requested id, in request order: a queue per decoded id
    # keeps "1" and the global id of patient 1 apart when a request names both.
    echo = info.context.requested_ids
    decoded = []
    for value in values:
        pk = patient_pk(str(value))
        text = str(pk) if pk is not None else str(value)
        echo.setdefault(text, deque()).append(str(value))
        decoded.append(text)
    return decoded


def requested_id(info: Info, requested: str, patient_id: int | None) -> strawberry.ID:
    """The id a bulk result answers for: what the client sent, or (rows chosen by a
    filter) the patient's global id."""
    sent = info.context.requested_ids.get(requested)
    if sent:
        return strawberry.ID(sent.popleft())
    if patient_id is not None:
        return global_id(PATIENT, patient_id)
    return strawberry.ID(requested)
