"""ASGI middleware: request id, protective headers, request body cap, access log, and
GraphQL-shaped JSON for every 5xx (an unhandled fault or a plain-text 5xx from below
becomes ``{"errors": [{"message", "extensions": {"code", "requestId"}}]}``).

The request id is our own unless the socket peer is a trusted proxy
(``PORTAL_TRUSTED_PROXIES``) that sent a well-formed ``X-Request-Id``: then the proxy's
id is kept, so one id follows a request through the proxy's and our logs."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import uuid

import asyncpg
import orjson
import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tortoise.exceptions import DBConnectionError

from core import metrics

log = structlog.get_logger("http")

SECURITY_HEADERS = [
    # Every answer can hold health data or a credential: never cached (SECURITY SESS-1, TOK-9).
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]
_SECURITY_HEADER_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class PortalMiddleware:
    """Request id, protective headers, body cap, and the per-process limits of issue 10:
    at most ``max_in_flight`` requests at once (503 at once beyond, so a flood queues
    in no one's memory), a deadline per request, and a client that goes away is one
    info line, never a 500 with a traceback."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        trusted_proxies: list[str] | None = None,
        max_in_flight: int = 64,
        request_timeout_seconds: float = 30.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies or []]
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout_seconds
        self.in_flight = 0

    def _request_id(self, scope: Scope) -> str:
        client = scope.get("client")
        if self.proxies and client:
            try:
                peer = ipaddress.ip_address(client[0])
            except ValueError:
                peer = None
            if peer is not None and any(peer in n for n in self.proxies):
                given = dict(scope.get("headers", [])).get(b"x-request-id", b"")
                text = given.decode("latin-1")
                if REQUEST_ID.match(text):
                    return text
        return uuid.uuid4().hex

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        outcome: str | None = None
        response_started = False
        disconnected = False
        received = 0

        async def limited_receive() -> Message:
            nonlocal received, disconnected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            elif message["type"] == "http.disconnect":
                disconnected = True
            return message

        started_response = False
        replacing = False  # a non-JSON 5xx from below: its body is replaced by ours

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response, replacing, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [
                    h for h in message.get("headers", []) if h[0] not in _SECURITY_HEADER_NAMES
                ]
                content_type = dict(headers).get(b"content-type", b"")
                if status >= 500 and not content_type.startswith(b"application/json"):
                    replacing = True
                    return
                started_response = True
                headers.extend(SECURITY_HEADERS)
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            elif replacing:
                if not message.get("more_body", False):
                    started_response = True
                    await _server_error(send, request_id, status)
                return
            await send(message)

        # Liveness stays answerable when the process is full.
        counted = scope.get("path") != "/healthz"
        try:
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and (
                not declared.isdigit() or int(declared) > self.max_body_bytes
            ):
                status = 413
                await _error(send, request_id, 413, PAYLOAD_TOO_LARGE)
                return
            if counted and self.in_flight >= self.max_in_flight:
                status, outcome = 503, "busy"
                await _error(send, request_id, 503, SERVER_BUSY, retry_after=1)
                return
            self.in_flight += counted
            try:
                async with asyncio.timeout(self.request_timeout):
                    await self.app(scope, limited_receive, send_with_headers)
            finally:
                self.in_flight -= counted
        except BodyTooLarge:
            status = 413
            await _error(send, request_id, 413, PAYLOAD_TOO_LARGE)
        except TimeoutError:
            # Cancelled where it waited: an open transaction rolls back.
            outcome = "deadline"
            if not response_started:
                status = 503
                await _error(send, request_id, 503, DEADLINE_EXCEEDED, retry_after=1)
        except ClientDisconnect:
            outcome = "client_disconnected"
            status = 499  # nginx's "client closed request": nobody got an answer
        except Exception as exc:
            # Logged with its traceback here (never the body or query string); the client
            # gets JSON it can parse, with the id to quote to support.
            log.error("http.fault", exc_info=exc)
            if not started_response and not response_started:
                status = 503 if _unavailable(exc) else 500
                await _server_error(send, request_id, status)
            else:
                raise
        finally:
            if status >= 500:
                metrics.HTTP_ERRORS.labels(path=str(scope.get("path", ""))[:64]).inc()
            # Path only: a query string could carry anything a client put there.
            log.info(
                "http.request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
                **({"outcome": outcome} if outcome else {}),
            )
            structlog.contextvars.unbind_contextvars("request_id")


PAYLOAD_TOO_LARGE = (b"Request body too large.", b"PAYLOAD_TOO_LARGE")
SERVER_BUSY = (b"The server is busy; retry shortly.", b"SERVER_BUSY")
SERVICE_UNAVAILABLE = (
    b"The service is temporarily unavailable; try again shortly.",
    b"SERVICE_UNAVAILABLE",
)
INTERNAL_ERROR = (b"Internal server error.", b"INTERNAL_SERVER_ERROR")
DEADLINE_EXCEEDED = (b"The request took too long and was stopped.", b"DEADLINE_EXCEEDED")


class BodyTooLarge(Exception):
    pass


def _unavailable(exc: BaseException) -> bool:
    """A dependency that cannot be reached (database connection lost or refused, the
    database missing or shutting down): 503, worth retrying, rather than a fault of ours."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE):
            return True
        current = current.__cause__ or current.__context__
    return False


_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    DBConnectionError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.TooManyConnectionsError,
)


async def _server_error(send: Send, request_id: str, status: int) -> None:
    if status == 503:
        await _error(send, request_id, status, SERVICE_UNAVAILABLE, retry_after=5)
    else:
        await _error(send, request_id, status, INTERNAL_ERROR)


async def _error(
    send: Send,
    request_id: str,
    status: int,
    error: tuple[bytes, bytes],
    *,
    retry_after: int | None = None,
) -> None:
    """A GraphQL-shaped JSON answer from the middleware itself, with the request id to
    quote to support."""
    message, code = error
    body = orjson.dumps(
        {
            "errors": [
                {
                    "message": message.decode(),
                    "extensions": {"code": code.decode(), "requestId": request_id},
                }
            ]
        }
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        (b"x-request-id", request_id.encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except OSError:
        pass  # the client is gone; the access line says what it would have got
