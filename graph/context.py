"""Per-request context: the caller (staff user or patient session), the client address
and request id for audit, and the app's services."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from strawberry.types import Info as StrawberryInfo

from core.secrets import digest
from graph.errors import PasswordChangeRequired, Unauthenticated
from graph.services import Services
from models import ActorType, PatientSession, StaffUser
from onboarding.actor import Actor
from onboarding.admin import STAFF_PREFIX
from onboarding.sessions import SESSION_PREFIX, find_session


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
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
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

    @property
    def practice_id(self) -> int:
        return self.require_staff().practice_id


async def authenticate(request: Request) -> tuple[StaffUser | None, PatientSession | None]:
    return await authenticate_header(request.headers.get("authorization", ""))


async def authenticate_header(header: str) -> tuple[StaffUser | None, PatientSession | None]:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None, None
    if token.startswith(STAFF_PREFIX):
        staff = await StaffUser.filter(token_digest=digest(token), active=True).first()
        return staff, None
    if token.startswith(SESSION_PREFIX):
        return None, await find_session(token)
    return None, None


Info = StrawberryInfo[Context, None]
