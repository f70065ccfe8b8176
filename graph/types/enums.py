import strawberry

from models import ChartStatus as DomainChartStatus
from models import DeliveryStatus as DomainDeliveryStatus
from onboarding.status import PortalStatus as DomainPortalStatus

PortalStatus = strawberry.enum(
    DomainPortalStatus,
    name="PortalStatus",
    description="Where a patient stands in onboarding; each value names the next step.",
)
ChartStatus = strawberry.enum(DomainChartStatus, name="ChartStatus")
DeliveryStatus = strawberry.enum(DomainDeliveryStatus, name="DeliveryStatus")
