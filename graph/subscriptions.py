"""Subscription root: the live Onboarding Tool (SPEC 8.9).

``onboardingChanged`` runs over graphql-transport-ws at ``/graphql``; the staff token
travels in ``connection_init`` (``{"Authorization": "Bearer stf_…"}``), checked once by
``PortalGraphQL.on_ws_connect``. Each event of the staff's own practice is pushed,
whichever process or host made the change (``graph.live``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from typing import cast

import strawberry
import structlog
from starlette.websockets import WebSocket

from graph.context import Info, staff_still_valid
from graph.ids import PATIENT, global_id, patient_pk
from graph.live import SLOW_SUBSCRIBER_CLOSE_CODE, SLOW_SUBSCRIBER_REASON
from graph.types.enums import PortalStatus
from graph.types.patient import Patient
from models import PortalEvent

# As for a connection_init without a valid staff token: the client must authenticate anew.
REVOKED_CLOSE_CODE = 4403
REVOKED_REASON = "the staff token is no longer valid"
TOKEN_RECHECK_SECONDS = 1.0

log = structlog.get_logger("live")


@strawberry.type(description="A change of one patient's portal state (docs/events.md).")
class OnboardingChange:
    event_id: str = strawberry.field(description="The same id webhooks carry (evt_…).")
    type: str
    patient_id: strawberry.ID
    sequence: int = strawberry.field(description="1, 2, 3… per patient, in commit order.")
    portal_status: PortalStatus = strawberry.field(description="The status after the change.")
    occurred_at: datetime

    @strawberry.field(description="The patient's row as the Onboarding Tool lists it now.")
    async def patient(self, info: Info) -> Patient | None:
        from graph.queries import reader

        pid = patient_pk(self.patient_id)
        row = await reader(info).one(pid) if pid is not None else None
        return Patient.from_row(row) if row else None

    @classmethod
    def from_model(cls, event: PortalEvent) -> OnboardingChange:
        return cls(
            event_id=f"evt_{event.id}",
            type=event.type,
            patient_id=global_id(PATIENT, event.patient_id),
            sequence=event.seq,
            portal_status=PortalStatus(event.portal_status),
            occurred_at=event.occurred_at,
        )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Each portal-state change of the caller's practice (staff), optionally "
        "only for some patients or for changes into some statuses."
    )
    async def onboarding_changed(
        self,
        info: Info,
        patient_ids: list[strawberry.ID] | None = None,
        statuses: list[PortalStatus] | None = None,
    ) -> AsyncGenerator[OnboardingChange, None]:
        ctx = info.context
        practice_id = ctx.practice_id  # raises for anyone but staff
        wanted_ids = {patient_pk(i) for i in patient_ids} if patient_ids is not None else None
        wanted_statuses = {s.value for s in statuses} if statuses is not None else None
        staff = ctx.staff
        assert staff is not None  # practice_id let only staff through
        ttl = timedelta(days=ctx.services.settings.staff_token_ttl_days)
        checked = float("-inf")  # the first push asks
        hub = ctx.services.live
        subscriber = hub.subscribe(practice_id)
        dropped = asyncio.ensure_future(subscriber.dropped.wait())
        try:
            while True:
                nxt = asyncio.ensure_future(subscriber.queue.get())
                done, _ = await asyncio.wait({nxt, dropped}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    # A client that does not keep up is cut off with a clear reason.
                    websocket = cast(WebSocket, ctx.request)
                    await websocket.close(
                        code=SLOW_SUBSCRIBER_CLOSE_CODE, reason=SLOW_SUBSCRIBER_REASON
                    )
                    return
                event = nxt.result()
                if wanted_ids is not None and event.patient_id not in wanted_ids:
                    continue
                if wanted_statuses is not None and event.portal_status not in wanted_statuses:
                    continue
                # The token was checked at connection_init: staff revoked, made inactive
                # or expired since then hear nothing more. Asked again before a push at
                # most once a second (a lookup per change cost ~0.6 ms of the loop per
                # subscriber: 6 s for a 10,000-patient bulk action).
                if time.monotonic() - checked >= TOKEN_RECHECK_SECONDS:
                    websocket = cast(WebSocket, ctx.request)
                    try:
                        valid = await staff_still_valid(staff, ttl)
                    except Exception:  # noqa: BLE001 (the database is briefly away)
                        log.warning("live.token_check_failed", exc_info=True)
                        # 1011: graphql-ws clients reconnect, and authenticate anew.
                        await websocket.close(code=1011, reason="try again")
                        return
                    if not valid:
                        await websocket.close(code=REVOKED_CLOSE_CODE, reason=REVOKED_REASON)
                        return
                    checked = time.monotonic()
                yield OnboardingChange.from_model(event)
        finally:
            dropped.cancel()
            with contextlib.suppress(Exception):
                hub.unsubscribe(subscriber)
