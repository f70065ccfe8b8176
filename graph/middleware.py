"""ASGI middleware: request id, protective headers, request body cap, access log."""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("http")

SECURITY_HEADERS = [
    # Every answer can hold health data or a credential: never cached (SECURITY SESS-1, TOK-9).
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]


class PortalMiddleware:
    """Request id, protective headers, body cap, and the per-process limits of issue 10:
    at most ``max_in_flight`` requests at once (503 at once beyond, so a flood queues
    in no one's memory), a deadline per request, and a client that goes away is one
    info line, never a 500 with a traceback."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        max_in_flight: int = 64,
        request_timeout_seconds: float = 30.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.request_timeout = request_timeout_seconds
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
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

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [
                    h for h in message.get("headers", []) if h[0] not in dict(SECURITY_HEADERS)
                ]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
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
                await _error(send, request_id, 503, SERVER_BUSY, retry_after=True)
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
                await _error(send, request_id, 503, DEADLINE_EXCEEDED, retry_after=True)
        except ClientDisconnect:
            outcome = "client_disconnected"
            status = 499  # nginx's "client closed request": nobody got an answer
        finally:
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
DEADLINE_EXCEEDED = (b"The request took too long and was stopped.", b"DEADLINE_EXCEEDED")


class BodyTooLarge(Exception):
    pass


async def _error(
    send: Send,
    request_id: str,
    status: int,
    error: tuple[bytes, bytes],
    *,
    retry_after: bool = False,
) -> None:
    message, code = error
    body = b'{"errors":[{"message":"' + message + b'","extensions":{"code":"' + code + b'"}}]}'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        (b"x-request-id", request_id.encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except OSError:
        pass  # the client is gone; the access line says what it would have got
