"""Domain enums registered as GraphQL enums (the classes themselves, re-exported)."""

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

__all__ = ["ChartStatus", "DeliveryStatus", "PortalStatus"]
