"""Webhook endpoints of a practice (SPEC 8.8): register, list, disable/enable, rotate the
secret, delete; and the Standard Webhooks signature the delivery loop puts on each
message (``onboarding.webhook_worker``).

Every function takes the staff's practice and touches only that practice's endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.settings import Settings
from models import Practice, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from onboarding import audit, events
from onboarding.actor import Actor
from onboarding.errors import ErrorCode, Problem

SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS_PER_PRACTICE = 20


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes: the form Standard Webhooks libraries take."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (Standard Webhooks)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_header(endpoint: WebhookEndpoint, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per valid secret, space-separated: during a rotation's overlap the
    receiver can verify with either the old or the new secret."""
    signatures = [sign(endpoint.secret, msg_id, timestamp, body)]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and until > utcnow():
        signatures.append(sign(endpoint.previous_secret, msg_id, timestamp, body))
    return " ".join(signatures)


# -- where an endpoint may point (SSRF) ---------------------------------------------


# IPv6 forms that carry an IPv4 address a gateway may forward to: NAT64's well-known
# prefix (RFC 6052) and the deprecated IPv4-compatible form (RFC 4291 2.5.5.1).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
# NAT64 for local use (RFC 8215): leads into the site by definition.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or ip in _LOCAL_NAT64:  # fec0::/10: deprecated, still routed
            return False
        teredo = ip.teredo
        inner = ip.ipv4_mapped or ip.sixtofour or (teredo[1] if teredo else None)
        if inner is None and any(ip in n for n in (_NAT64, _IPV4_COMPATIBLE, _IPV4_TRANSLATED)):
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            ip = inner  # judged by the IPv4 address it reaches
    return ip.is_global and not ip.is_multicast


async def url_problem(url: str, settings: Settings, *, resolve: bool = True) -> str | None:
    """Why the service must not call ``url``, or None. Checked when an endpoint is
    registered: every address the name resolves to must be public, unless
    ``webhook_allow_private``. Before each delivery (``resolve=False``) only the URL
    itself: its addresses are checked when the connection is made (:class:`CheckedNetwork`),
    where DNS answers for the connection, not a moment before it."""
    # urlsplit drops tabs and newlines silently, and the HTTP client then refuses the
    # URL at every delivery: refused here instead, with spaces and control characters.
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an https URL"
    if not parts.hostname.isascii():
        # Python's resolver encodes a name by IDNA 2003, the HTTP client by IDNA 2008:
        # "ß" would be checked as "ss" and called as "xn--zca", two different hosts.
        return "must name its host in ASCII (an international name in its xn-- form)"
    if parts.username or parts.password:
        return "must not carry credentials"
    if settings.webhook_allow_private:
        return None
    if parts.scheme != "https":
        return "must be an https URL"
    if not resolve:
        return None
    _, why = await public_addresses(parts.hostname, port or 443)
    return why


async def public_addresses(host: str, port: int) -> tuple[list[str], str | None]:
    """Every address ``host`` resolves to, in the resolver's order, if all are public;
    else why not."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        # UnicodeError: an empty or over-long label ("a..b.com").
        return [], "the host name does not resolve"
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses or not all(_public(a) for a in addresses):
        return [], "resolves to a private, loopback or link-local address"
    return addresses, None


class CheckedNetwork(httpcore.AsyncNetworkBackend):
    """Connects only where the check allows, checked when connecting: the host is
    resolved here, every address must be public, and the connection goes to one of
    those very addresses (TLS and the Host header still name the host). A name that
    re-resolves to a private address after registration (DNS rebinding) gets no
    connection."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        addresses, why = await public_addresses(host, port)
        if why:
            raise httpcore.ConnectError(f"refused: the host {why}")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_transport(settings: Settings) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its httpcore connection pool rebuilt on
    :class:`CheckedNetwork` (httpx's constructor takes no network backend), with
    httpx's default pool limits, and room for every concurrent attempt."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=max(100, settings.webhook_concurrency),
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        network_backend=CheckedNetwork(settings.webhook_allow_private),
    )
    return transport


# -- management ---------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _bad_types(event_types: list[str]) -> list[str]:
    return [t for t in event_types if t not in events.EVENT_TYPES]


async def create_endpoint(
    actor: Actor, practice_id: int, url: str, event_types: list[str], settings: Settings
) -> tuple[CreatedEndpoint | None, list[Problem]]:
    url = url.strip()
    if len(url) > 2000:
        return None, [Problem(ErrorCode.INVALID_INPUT, "the URL is too long", ("url",))]
    if bad := _bad_types(event_types):
        return None, [
            Problem(
                ErrorCode.INVALID_INPUT,
                f"unknown event types: {', '.join(sorted(set(bad))[:5])}",
                ("eventTypes",),
            )
        ]
    if why := await url_problem(url, settings):
        return None, [Problem(ErrorCode.URL_NOT_ALLOWED, f"the URL {why}", ("url",))]
    secret = new_secret()
    async with in_transaction():
        # The cap is counted under the practice's row lock (SQLite: the write lock), so
        # concurrent requests cannot each see room for one more. NO KEY: other writers'
        # foreign-key checks on the practice (new patients, staff) are not held up.
        await Practice.select_for_update(no_key=True).filter(id=practice_id).first()
        if (
            await WebhookEndpoint.filter(practice_id=practice_id).count()
            >= MAX_ENDPOINTS_PER_PRACTICE
        ):
            return None, [
                Problem(
                    ErrorCode.INVALID_INPUT,
                    f"a practice has at most {MAX_ENDPOINTS_PER_PRACTICE} endpoints",
                )
            ]
        endpoint = await WebhookEndpoint.create(
            practice_id=practice_id,
            url=url,
            event_types=sorted(set(event_types)),
            secret=secret,
            enabled=True,
            created_at=utcnow(),
            created_by_id=actor.actor_id,
        )
        await audit.record(actor, "webhook.created", detail={"endpoint": endpoint.id})
    return CreatedEndpoint(endpoint, secret), []


async def list_endpoints(practice_id: int) -> list[WebhookEndpoint]:
    return await WebhookEndpoint.filter(practice_id=practice_id).order_by("id")


async def get_endpoint(practice_id: int, endpoint_id: int | None) -> WebhookEndpoint | None:
    if endpoint_id is None:
        return None
    return await WebhookEndpoint.filter(id=endpoint_id, practice_id=practice_id).first()


def _not_found() -> Problem:
    return Problem(ErrorCode.NOT_FOUND, "no such webhook endpoint", ("id",))


async def set_enabled(
    actor: Actor, practice_id: int, endpoint_id: int | None, enabled: bool
) -> tuple[WebhookEndpoint | None, list[Problem]]:
    """Disable stops deliveries (they wait, nothing is dropped); enable resumes them,
    the oldest first, and clears the reason the service disabled it for."""
    endpoint = await get_endpoint(practice_id, endpoint_id)
    if endpoint is None:
        return None, [_not_found()]
    now = utcnow()
    columns: dict[str, object] = {"enabled": enabled}
    if enabled:
        columns.update(disabled_reason=None, disabled_at=None, enabled_at=now)
        # Waiting deliveries go out at once rather than at their backed-off time.
        await WebhookDelivery.filter(endpoint_id=endpoint.id, status="pending").update(
            next_attempt_at=now
        )
    else:
        columns.update(disabled_reason="disabled by staff", disabled_at=now)
    await WebhookEndpoint.filter(id=endpoint.id).update(**columns)
    await endpoint.refresh_from_db()
    await audit.record(
        actor,
        "webhook.enabled" if enabled else "webhook.disabled",
        detail={"endpoint": endpoint.id},
    )
    return endpoint, []


async def rotate_secret(
    actor: Actor, practice_id: int, endpoint_id: int | None, settings: Settings
) -> tuple[CreatedEndpoint | None, list[Problem]]:
    endpoint = await get_endpoint(practice_id, endpoint_id)
    if endpoint is None:
        return None, [_not_found()]
    secret = new_secret()
    overlap_until: datetime = utcnow() + timedelta(hours=settings.webhook_secret_overlap_hours)
    await WebhookEndpoint.filter(id=endpoint.id).update(
        secret=secret, previous_secret=endpoint.secret, previous_secret_until=overlap_until
    )
    await endpoint.refresh_from_db()
    await audit.record(actor, "webhook.secret_rotated", detail={"endpoint": endpoint.id})
    return CreatedEndpoint(endpoint, secret), []


async def delete_endpoint(
    actor: Actor, practice_id: int, endpoint_id: int | None
) -> tuple[bool, list[Problem]]:
    endpoint = await get_endpoint(practice_id, endpoint_id)
    if endpoint is None:
        return False, [_not_found()]
    await WebhookAttempt.filter(endpoint_id=endpoint.id).delete()
    await WebhookDelivery.filter(endpoint_id=endpoint.id).delete()
    await endpoint.delete()
    await audit.record(actor, "webhook.deleted", detail={"endpoint": endpoint.id})
    return True, []
