"""Tortoise models and the database configuration."""

from models.account import PasswordOrigin, PatientSession, PortalAccount
from models.audit import ActorType, AuditEvent
from models.idempotency import IdempotencyKey
from models.link import DeliveryStatus, LinkPurpose, LinkToken, RevokeReason
from models.outbox import OutboxMessage, OutboxStatus
from models.patient import INVITABLE_CHART_STATUSES, ChartStatus, Patient
from models.practice import Practice, StaffUser
from models.webhook import (
    PortalEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)

__all__ = [
    "INVITABLE_CHART_STATUSES",
    "ActorType",
    "AuditEvent",
    "ChartStatus",
    "DeliveryStatus",
    "IdempotencyKey",
    "LinkPurpose",
    "LinkToken",
    "OutboxMessage",
    "OutboxStatus",
    "PasswordOrigin",
    "Patient",
    "PatientSession",
    "PortalAccount",
    "PortalEvent",
    "Practice",
    "RevokeReason",
    "StaffUser",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
]
