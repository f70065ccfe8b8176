"""The app factory: ``create_app(settings)`` builds the Starlette app; its lifespan owns
the database connection and the in-process mail dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from core.background import every
from core.logging import configure_logging
from core.settings import Settings
from graph.context import Context, authenticate, authenticate_header, client_address
from graph.middleware import PortalMiddleware
from graph.schema import build_schema
from graph.services import Services
from mail import outbox
from mail.transports import Transport
from models.database import connect, disconnect, migrate
from onboarding import events
from onboarding.expiry import announce_expired_invitations
from onboarding.reminders import send_due_reminders

REMINDER_INTERVAL_SECONDS = 60


class PortalGraphQL(GraphQL[Context, None]):
    def __init__(self, schema: Any, services: Services, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self.services = services

    def decode_json(self, data: str | bytes) -> object:
        # Valid JSON that is no object (a bare `42`) would fail inside Strawberry with a
        # 500; answer it like malformed JSON, with a 400 (SPEC 6).
        value = super().decode_json(data)
        if not isinstance(value, (dict, list)):
            raise json.JSONDecodeError("a GraphQL request must be a JSON object", "", 0)
        return value

    def encode_json(self, data: object) -> bytes:
        # orjson: several times faster than json.dumps on an Onboarding Tool page.
        return orjson.dumps(data)

    async def get_context(self, request: Request, response: Response) -> Context:  # type: ignore[override]
        staff, session = await authenticate(request)
        return Context(
            request=request,
            response=response,
            services=self.services,
            staff=staff,
            session=session,
            client_addr=client_address(request, self.services.settings.trusted_proxies),
            request_id=request.scope.get("state", {}).get("request_id", ""),
        )

    async def on_ws_connect(self, context: Context) -> UnsetType:
        """A subscription's staff token comes in connection_init (browsers cannot set
        headers on a WebSocket); anything but an active staff token is refused (4403)."""
        params = context.connection_params or {}
        header = params.get("Authorization") or params.get("authorization") or ""
        staff, _ = await authenticate_header(header if isinstance(header, str) else "")
        if staff is None:
            raise ConnectionRejectionError()
        context.staff = staff
        return UNSET


ACTIVATE_PAGE = Path(__file__).with_name("static") / "activate.html"


async def activate_page(_: Request) -> Response:
    return HTMLResponse(ACTIVATE_PAGE.read_text("utf-8"))


def create_app(
    settings: Settings, *, manage_database: bool = True, transport: Transport | None = None
) -> Starlette:
    """``manage_database=False`` lets tests own the Tortoise connection in their loop."""
    configure_logging(settings)
    events.configure(settings)
    services = Services.build(settings, transport)
    graphql_app = PortalGraphQL(
        build_schema(settings),
        services=services,
        graphql_ide=None if settings.is_production else "graphiql",
        # Tokens and passwords travel only in POST bodies, never in URLs (GQL-8, TOK-9).
        allow_queries_via_get=False,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            await migrate(settings.database_url)
            await connect(settings.database_url)
        # Start-up objects (schema, models, templates) live for the process: keep them
        # out of the garbage collector's generations so collections stay short.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loops = []
        await services.live.start(settings.database_url)
        if settings.mail_dispatch_in_server:
            # The unit of work announces committed mail; the dispatcher leaves at once.
            outbox.subscribe(services.dispatcher.notify)
            loops.append(asyncio.create_task(services.dispatcher.run_forever(stop)))
            # Webhooks go out from the same processes as mail (SPEC 8.8).
            events.subscribe(services.webhooks.notify)
            loops.append(asyncio.create_task(services.webhooks.run_forever(stop)))
            loops.append(
                asyncio.create_task(
                    every(
                        REMINDER_INTERVAL_SECONDS,
                        lambda: send_due_reminders(settings),
                        stop,
                        "reminders",
                    )
                )
            )
            loops.append(
                asyncio.create_task(
                    every(REMINDER_INTERVAL_SECONDS, announce_expired_invitations, stop, "expiry")
                )
            )
        try:
            yield
        finally:
            stop.set()
            outbox.unsubscribe(services.dispatcher.notify)
            events.unsubscribe(services.webhooks.notify)
            await asyncio.gather(*loops)
            await services.live.stop()
            await services.background.drain()
            services.hasher.close()
            if manage_database:
                await disconnect()

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/graphql", graphql_app),
        # The live list (SPEC 8.9): graphql-transport-ws on the same path.
        WebSocketRoute("/graphql", graphql_app),
        Route("/healthz", health),
    ]
    if not settings.is_production:
        # A stand-in for the patient app's link page, so the embedded default works end
        # to end in a browser; production links point at the real patient app.
        routes.append(Route("/portal/activate", activate_page))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(PortalMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
