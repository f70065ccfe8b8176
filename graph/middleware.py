"""ASGI middleware: request id, protective headers, request body cap, access log, and
GraphQL-shaped JSON for every 5xx (an unhandled fault or a plain-text 5xx from below
becomes ``{"errors": [{"message", "extensions": {"code", "requestId"}}]}``).

The request id is our own unless the socket peer is a trusted proxy
(``PORTAL_TRUSTED_PROXIES``) that sent a well-formed ``X-Request-Id``: then the proxy's
id is kept, so one id follows a request through the proxy's and our logs."""

from __future__ import annotations

import ipaddress
import re
import time
import uuid

import asyncpg
import orjson
import structlog
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


REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class PortalMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, trusted_proxies: list[str] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies or []]

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

        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _too_large(send, request_id)
            structlog.contextvars.unbind_contextvars("request_id")
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        started_response = False
        replacing = False  # a non-JSON 5xx from below: its body is replaced by ours

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response, replacing
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    h for h in message.get("headers", []) if h[0] not in dict(SECURITY_HEADERS)
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

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            await _too_large(send, request_id)
            status = 413
        except Exception as exc:
            # Logged with its traceback here (never the body or query string); the client
            # gets JSON it can parse, with the id to quote to support.
            log.error("http.fault", exc_info=exc)
            if not started_response:
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
            )
            structlog.contextvars.unbind_contextvars("request_id")


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
    code, message = (
        ("SERVICE_UNAVAILABLE", "The service is temporarily unavailable; try again shortly.")
        if status == 503
        else ("INTERNAL_SERVER_ERROR", "Internal server error.")
    )
    body = orjson.dumps(
        {"errors": [{"message": message, "extensions": {"code": code, "requestId": request_id}}]}
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        (b"x-request-id", request_id.encode()),
    ]
    if status == 503:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, request_id: str) -> None:
    body = (
        b'{"errors":[{"message":"Request body too large.",'
        b'"extensions":{"code":"PAYLOAD_TOO_LARGE"}}]}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
