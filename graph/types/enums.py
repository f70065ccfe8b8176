"""Domain enums registered as GraphQL enums (the classes themselves, re-exported)."""

from enum import Enum

import strawberry

from models import ChartStatus, DeliveryStatus
from onboarding.status import PortalStatus

strawberry.enum(
    PortalStatus,
    name="PortalStatus",
    description="Where a patient stands in onboarding; each value names the next step.",
)
strawberry.enum(ChartStatus, name="ChartStatus")
strawberry.enum(DeliveryStatus, name="DeliveryStatus")



@strawberry.enum(description="How a link or notice travels (SPEC 9.3).")
class Channel(Enum):
    EMAIL = "email"
    SMS = "sms"


@strawberry.enum(description="By what a patient can be reached now (Onboarding Tool filter).")
class Reachability(Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    NONE = "NONE"


__all__ = ["Channel", "ChartStatus", "DeliveryStatus", "PortalStatus", "Reachability"]
