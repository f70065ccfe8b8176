"""Per-request context: the caller (staff user or patient session), the client address
and request id for audit, and the app's services."""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from strawberry.types import Info as StrawberryInfo

from core.clock import utcnow
from core.secrets import digest
from graph.cursors import Cursors
from graph.errors import PasswordChangeRequired, Unauthenticated
from graph.services import Services
from models import ActorType, PatientSession, StaffUser
from onboarding.actor import Actor
from onboarding.admin import STAFF_PREFIX
from onboarding.listing import PatientReader
from onboarding.sessions import SESSION_PREFIX, find_session
from onboarding.sql import Params, columns_of, connection, dialect_of


def client_address(request: Request, trusted_proxies: list[str]) -> str | None:
    """The socket peer, unless it is a configured proxy; then the right-most address in
    X-Forwarded-For that is not itself a trusted proxy (SECURITY LOG-5)."""
    peer = request.client.host if request.client else None
    if not peer or not trusted_proxies:
        return peer
    networks = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in networks)

    if not trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return peer
            if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
                # Without its zone id ("fe80::1%eth0"): that names an interface of the
                # sender's host, means nothing here, and is of any length (the audit
                # column holds 64 characters).
                address = ipaddress.IPv6Address(hop.partition("%")[0])
            return str(address)
    return peer


@dataclass
class Context:
    request: Request
    response: Response
    services: Services
    staff: StaffUser | None
    session: PatientSession | None
    client_addr: str | None
    request_id: str
    # Bulk inputs: the ids as the client sent them, per decoded id (graph.ids), so
    # results echo them as ``requestedId``.
    requested_ids: dict[str, deque[str]] = field(default_factory=dict)
    # The graphql-transport-ws connection_init payload (a subscription's credentials).
    connection_params: dict | None = None

    @property
    def settings(self):
        return self.services.settings

    @property
    def actor(self) -> Actor:
        if self.staff is not None:
            return Actor(
                ActorType.STAFF,
                self.staff.id,
                self.staff.practice_id,
                self.client_addr,
                self.request_id,
            )
        if self.session is not None:
            return Actor(
                ActorType.PATIENT,
                self.session.account.patient.id,
                self.session.account.patient.practice_id,
                self.client_addr,
                self.request_id,
            )
        return Actor(ActorType.ANONYMOUS, None, None, self.client_addr, self.request_id)

    def require_staff(self) -> StaffUser:
        if self.staff is None:
            raise Unauthenticated()
        return self.staff

    def require_patient(self, *, restricted_ok: bool = False) -> PatientSession:
        """The caller's patient session. A session opened with a staff-set password
        (``full_access`` false) passes only where ``restricted_ok``: changePassword and
        logout (SECURITY NOTIF-2)."""
        if self.session is None:
            raise Unauthenticated("A valid patient session is required.")
        if not self.session.full_access and not restricted_ok:
            raise PasswordChangeRequired()
        return self.session

    def patient_reader(self) -> PatientReader:
        """Reads of the staff user's practice (every statement scoped to it)."""
        return PatientReader(
            self.practice_id, timedelta(days=self.settings.temporary_password_ttl_days)
        )

    @property
    def cursors(self) -> Cursors:
        return Cursors(self.services.sealer, self.practice_id)

    @property
    def practice_id(self) -> int:
        return self.require_staff().practice_id


async def authenticate(
    request: Request, staff_token_ttl: timedelta = timedelta(days=90)
) -> tuple[StaffUser | None, PatientSession | None]:
    return await authenticate_header(request.headers.get("authorization", ""), staff_token_ttl)


async def authenticate_header(
    header: str, staff_token_ttl: timedelta = timedelta(days=90)
) -> tuple[StaffUser | None, PatientSession | None]:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None, None
    if token.startswith(STAFF_PREFIX):
        return await find_staff(token, staff_token_ttl), None
    if token.startswith(SESSION_PREFIX):
        return None, await find_session(token)
    return None, None


# Last use is written at most this often per token: not a write per request.
LAST_USE_PRECISION = timedelta(minutes=1)


async def find_staff(token: str, ttl: timedelta) -> StaffUser | None:
    """The staff user of a live token: active, not revoked, not expired."""
    # Every staff request runs this: one hand-written statement and Tortoise's own
    # row-to-model step instead of building the ORM query each time (about 6% of an
    # Onboarding page's CPU, issue 15).
    conn = connection()
    params = Params(dialect_of(conn))
    # Only the placeholder is formatted in; the digest travels as a parameter.
    sql = (
        f"SELECT {columns_of(StaffUser)} FROM staff_user"  # noqa: S608
        f" WHERE token_digest = {params(digest(token))}"
        " AND active AND revoked_at IS NULL LIMIT 1"
    )
    rows = await conn.execute_query_dict(sql, params.values)
    if not rows:
        return None
    staff = StaffUser._init_from_db(**rows[0])
    now = utcnow()
    if (staff.token_issued_at or staff.created_at) + ttl <= now:
        return None
    if staff.last_used_at is None or now - staff.last_used_at >= LAST_USE_PRECISION:
        await StaffUser.filter(id=staff.id).update(last_used_at=now)
        staff.last_used_at = now
    return staff


async def staff_still_valid(staff: StaffUser, ttl: timedelta) -> bool:
    """Whether the token ``staff`` was authenticated with is still live (a long-lived
    connection, the live subscription, authenticates once and asks this again)."""
    fresh = await StaffUser.filter(
        id=staff.id, token_digest=staff.token_digest, active=True, revoked_at=None
    ).first()
    return fresh is not None and (fresh.token_issued_at or fresh.created_at) + ttl > utcnow()


Info = StrawberryInfo[Context, None]
