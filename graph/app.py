"""The app factory: ``create_app(settings)`` builds the Starlette app; its lifespan owns
the database connection and the in-process mail dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import structlog
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET, UnsetType

from core.background import every
from core.logging import configure_logging
from core.settings import Settings
from graph.context import Context, authenticate, authenticate_header, client_address
from graph.cors import StrictCORSMiddleware
from graph.middleware import PortalMiddleware
from graph.observability import healthz, metrics_endpoint, readyz
from graph.persisted import PersistedOperations, load_manifest
from graph.schema import build_schema
from graph.services import Services
from mail import outbox
from mail.transports import Transport
from models import search_index
from models.database import connect, disconnect, migrate
from onboarding import events
from onboarding.expiry import announce_expired_invitations
from onboarding.reminders import send_due_reminders

REMINDER_INTERVAL_SECONDS = 60
log = structlog.get_logger("graph.app")
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"

# Development GraphiQL (issue 10 item 7): the page and its assets ship in the package
# (graph/static/graphiql/), so it loads offline and asks no CDN for code that would run
# with the staff token in reach. The policy allows this origin only; styles may be
# inline because React and CodeMirror set style attributes as they lay out the editors.
GRAPHIQL_ASSETS_PATH = "/graphiql-assets"
GRAPHIQL_ASSETS = Path(__file__).with_name("static") / "graphiql"
GRAPHIQL_PAGE = (
    (Path(__file__).with_name("static") / "graphiql.html")
    .read_text("utf-8")
    .replace("__ASSETS__", GRAPHIQL_ASSETS_PATH)
)
GRAPHIQL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class PortalGraphQL(GraphQL[Context, None]):
    def __init__(
        self, schema: Any, services: Services, persisted: PersistedOperations, **kwargs: Any
    ) -> None:
        super().__init__(schema, **kwargs)
        self.services = services
        self.persisted = persisted

    async def render_graphql_ide(self, request: Request) -> Response:
        # Our page, not Strawberry's CDN one: packaged assets, headers never persisted.
        return HTMLResponse(GRAPHIQL_PAGE, headers={"Content-Security-Policy": GRAPHIQL_CSP})

    def decode_json(self, data: str | bytes) -> object:
        # orjson, not json: it refuses what is no text (invalid or overlong UTF-8,
        # encoded or escaped lone surrogates, a byte-order mark) and nesting deeper than
        # 1024, all as a JSONDecodeError, which Strawberry answers with a 400. json.loads
        # raised RecursionError (a 500) on 50 kB of brackets and let lone surrogates
        # through to fail (and be logged) in the database driver.
        try:
            value = orjson.loads(data)
        except RecursionError as exc:  # defensive: orjson stops at depth 1024
            raise json.JSONDecodeError("nested too deeply", "", 0) from exc
        # Valid JSON that is no object (a bare `42`) would fail inside Strawberry with a
        # 500; answer it like malformed JSON, with a 400 (SPEC 6).
        if not isinstance(value, (dict, list)):
            raise json.JSONDecodeError("a GraphQL request must be a JSON object", "", 0)
        return value

    def encode_json(self, data: object) -> bytes:
        # orjson: several times faster than json.dumps on an Onboarding Tool page.
        return orjson.dumps(data)

    async def get_sub_response(self, request: Request) -> Response:  # type: ignore[override]
        sub_response = await super().get_sub_response(request)
        # The GraphQL-over-HTTP media type when the client accepts it (SPEC 8.4).
        sub_response.portal_media_type = (  # type: ignore[attr-defined]
            GRAPHQL_RESPONSE_JSON
            if GRAPHQL_RESPONSE_JSON in request.headers.get("accept", "")
            else "application/json"
        )
        sub_response.portal_request_error = False  # type: ignore[attr-defined]
        return sub_response

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: Context,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        lookup = self.persisted.lookup(request_data.query, request_data.extensions)
        if lookup.error is not None:
            code, message = lookup.error
            sub_response.portal_request_error = True  # type: ignore[attr-defined]
            return PreExecutionError(
                data=None, errors=[GraphQLError(message, extensions={"code": code})]
            )
        request_data.query = lookup.query
        result = await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )
        if isinstance(result, PreExecutionError):
            sub_response.portal_request_error = True  # type: ignore[attr-defined]
        elif lookup.register is not None and lookup.query is not None:
            self.persisted.remember(lookup.register, lookup.query)
        return result

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = getattr(sub_response, "portal_media_type", "application/json")
        if media_type == GRAPHQL_RESPONSE_JSON:
            response.headers["content-type"] = GRAPHQL_RESPONSE_JSON + "; charset=utf-8"
            if getattr(sub_response, "portal_request_error", False):
                # A request error (unparsable, invalid, unknown persisted hash) has no
                # data entry and a 4xx status with this media type; application/json
                # keeps the 200 older clients expect (GraphQL over HTTP).
                response_data.pop("data", None)
                response.body = self.encode_json(response_data)
                response.headers["content-length"] = str(len(response.body))
                response.status_code = 400
        return response

    async def get_context(self, request: Request, response: Response) -> Context:  # type: ignore[override]
        staff, session = await authenticate(
            request, timedelta(days=self.services.settings.staff_token_ttl_days)
        )
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
        ttl = timedelta(days=self.services.settings.staff_token_ttl_days)
        staff, _ = await authenticate_header(header if isinstance(header, str) else "", ttl)
        if staff is None:
            raise ConnectionRejectionError()
        context.staff = staff
        return UNSET


ACTIVATE_PAGE = Path(__file__).with_name("static") / "activate.html"


def activate_page(settings: Settings) -> Any:
    # The page states the configured minimum length, not a hard-coded one.
    html = ACTIVATE_PAGE.read_text("utf-8").replace(
        "__PASSWORD_MIN_LENGTH__", str(settings.password_min_length)
    )

    async def page(_: Request) -> Response:
        return HTMLResponse(html)

    return page


def create_app(
    settings: Settings,
    *,
    manage_database: bool = True,
    transport: Transport | None = None,
    fast_execution: bool = True,
) -> Starlette:
    """``manage_database=False`` lets tests own the Tortoise connection in their loop;
    ``fast_execution=False`` completes every field through graphql-core's generic path
    (graph/execution.py), for tests and benchmarks that compare the two."""
    configure_logging(settings)
    if settings.allow_insecure_defaults:
        # A deliberate pilot: say once per start which production rule is relaxed.
        for rule in settings.unsafe_for_production():
            log.warning("insecure_default_allowed", rule=rule)
    events.configure(settings)
    services = Services.build(settings, transport)
    graphql_app = PortalGraphQL(
        build_schema(settings, fast_execution=fast_execution),
        services=services,
        persisted=PersistedOperations(
            load_manifest(settings.trusted_documents) if settings.trusted_documents else None
        ),
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
            await search_index.drain()
            services.hasher.close()
            services.limiter.close()
            if manage_database:
                await disconnect()

    routes = [
        Route("/graphql", graphql_app),
        # The live list (SPEC 8.9): graphql-transport-ws on the same path.
        WebSocketRoute("/graphql", graphql_app),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    if not settings.is_production:
        # A stand-in for the patient app's link page, so the embedded default works end
        # to end in a browser; production links point at the real patient app.
        routes.append(Route("/portal/activate", activate_page(settings)))
        routes.append(
            Mount(GRAPHIQL_ASSETS_PATH, StaticFiles(directory=GRAPHIQL_ASSETS), name="graphiql")
        )
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    # Inside PortalMiddleware, so preflight answers get the request id, the protective
    # headers and the access log like every other answer.
    app.add_middleware(StrictCORSMiddleware, origins=settings.cors_origins)
    app.add_middleware(
        PortalMiddleware,
        max_body_bytes=settings.max_body_bytes,
        trusted_proxies=settings.trusted_proxies,
        max_in_flight=settings.max_in_flight,
        request_timeout_seconds=settings.request_timeout_seconds,
    )
    return app
