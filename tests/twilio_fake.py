"""A local stand-in for Twilio's Messages API that checks requests as Twilio does and
answers with Twilio's status codes and error bodies (SPEC 9.3). It runs as a real HTTP
server (uvicorn in a thread), so the transport under test goes through httpx, basic
auth and form encoding exactly as it would against api.twilio.com."""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
FROM = "+16175550100"


@dataclass
class TwilioFake:
    port: int
    received: list[dict[str, str]] = field(default_factory=list)
    invalid: set[str] = field(default_factory=set)  # numbers answered with 21211
    throttle: dict[str, int] = field(default_factory=dict)  # number -> 429s still to give
    delay: float = 0.0  # seconds between taking a message and answering (fault tests)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, number: str) -> list[dict[str, str]]:
        return [m for m in self.received if m["To"] == number]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.invalid.clear()
            self.throttle.clear()


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def build_app(fake: TwilioFake) -> Starlette:
    async def messages(request: Request) -> JSONResponse:
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if (
            request.path_params["sid"] != ACCOUNT_SID
            or request.headers.get("authorization") != f"Basic {expected}"
        ):
            return _error(401, 20003, "Authenticate")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _error(400, 21609, "Invalid request body")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if not form.get("To"):
            return _error(400, 21604, "A 'To' phone number is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' phone number is required.")
        if not form.get("Body"):
            return _error(400, 21602, "Message body is required.")
        to = form["To"]
        with fake.lock:
            if fake.throttle.get(to, 0) > 0:
                fake.throttle[to] -= 1
                return _error(429, 20429, "Too Many Requests")
            if to in fake.invalid:
                return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            fake.received.append(form)
        if fake.delay:
            # The text is Twilio's from here on, answered or not.
            await asyncio.sleep(fake.delay)
        sid = "SM" + secrets.token_hex(16)
        return JSONResponse(
            {
                "sid": sid,
                "account_sid": ACCOUNT_SID,
                "to": to,
                "from": form.get("From"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
            status_code=201,
        )

    return Starlette(
        routes=[Route("/2010-04-01/Accounts/{sid}/Messages.json", messages, methods=["POST"])]
    )


class Running:
    def __init__(self, fake: TwilioFake) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(
                build_app(fake),
                host="127.0.0.1",
                port=fake.port,
                log_level="warning",
                lifespan="off",
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Twilio stand-in did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
