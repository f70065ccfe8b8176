"""Issue 10, item 2: transport limits. Read deadlines and connection caps are checked
against a real `portal serve` (uvicorn with graph.transport.PortalHttpProtocol) over
real sockets on 127.0.0.0/8; the in-flight cap, the request deadline, client
disconnects and the hashing queue against the real ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import core.passwords
from tests.conftest import POSTGRES_URL, Api, Mailbox, Staff, free_port
from tests.helpers import LOGIN
from tests.security.support import active_patient

REPO = Path(__file__).resolve().parents[2]
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
PER_ADDRESS = 5


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, Path]]:
    """`portal serve` in its own process; yields its port and its stderr file."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="portal-serve-"))
    env = {
        **os.environ,
        "PORTAL_DATABASE_URL": POSTGRES_URL or f"sqlite://{tmp}/serve.sqlite3",
        "PORTAL_MAIL_DIR": str(tmp / "mail"),
        "PORTAL_MAIL_DISPATCH_IN_SERVER": "false",
        "PORTAL_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "PORTAL_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "PORTAL_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
        "PORTAL_MAX_CONNECTIONS": "50",
    }
    log = tmp / "stderr.log"
    with log.open("wb") as err:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", "import portal_cli; portal_cli.main()", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if b"200 OK" in http_get(port, "/healthz"):
                    break
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        else:
            raise AssertionError("server did not start: " + log.read_text())
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=20)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    try:
        sock.bind((source, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def http_get(port: int, path: str, source: str = "127.0.0.1") -> bytes:
    with connect(port, source) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_closed(sock: socket.socket) -> tuple[bytes, float]:
    started = time.monotonic()
    data = read_all(sock)
    return data, time.monotonic() - started


def test_slow_headers_are_cut_with_408(server: tuple[int, Path]) -> None:
    """A client that never finishes its headers is answered 408 and closed after the
    header timeout, instead of holding the connection forever."""
    port, _ = server
    with connect(port) as sock:
        sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: t\r\n")
        data, seconds = wait_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert HEADER_TIMEOUT * 0.8 < seconds < HEADER_TIMEOUT + 3, seconds


def test_silent_connection_is_cut(server: tuple[int, Path]) -> None:
    port, _ = server
    with connect(port) as sock:
        data, seconds = wait_closed(sock)
    assert data.startswith(b"HTTP/1.1 408")
    assert seconds < HEADER_TIMEOUT + 3, seconds


def test_slow_body_is_cut_and_logged_once_without_traceback(server: tuple[int, Path]) -> None:
    """Headers on time, body never finished: the connection is closed after the body
    timeout; the application sees a disconnect: one info line, no 500, no traceback."""
    port, log = server
    before = log.read_text()
    with connect(port) as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n{\"query\": \"{ __typ"
        )
        data, seconds = wait_closed(sock)
    assert seconds < BODY_TIMEOUT + 3, seconds
    assert b" 500 " not in data
    # The disconnect is logged a few event-loop turns after the socket closes: wait for it.
    deadline = time.monotonic() + 10
    while "outcome=client_disconnected" not in (new := log.read_text()[len(before) :]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # room for a second line, which must not come
    new = log.read_text()[len(before) :]
    assert "Traceback" not in new and "status=500" not in new, new
    assert new.count("http.read_timeout") == 1, new
    assert new.count("outcome=client_disconnected") == 1, new


def test_one_address_cannot_take_every_connection(server: tuple[int, Path]) -> None:
    """A client holding PER_ADDRESS idle connections gets its next one closed at once;
    another address is still served, and the held ones are cut by the header timeout."""
    port, _ = server
    held = [connect(port, "127.0.0.3") for _ in range(PER_ADDRESS)]
    try:
        time.sleep(0.2)
        with connect(port, "127.0.0.3") as extra:
            data, seconds = wait_closed(extra)
        assert data == b"" and seconds < 0.5, (data, seconds)
        assert b"200 OK" in http_get(port, "/healthz", source="127.0.0.4")
        cut = [wait_closed(sock)[1] for sock in held]
        assert max(cut) < HEADER_TIMEOUT + 3, cut
        assert b"200 OK" in http_get(port, "/healthz", source="127.0.0.3")
    finally:
        for sock in held:
            sock.close()


# ------------------------------------------------------------ in-process (ASGI) limits


def slow_token_info(seconds: float) -> Any:
    async def slow(*_args: Any, **_kwargs: Any) -> Any:
        await asyncio.sleep(seconds)
        raise AssertionError("the deadline should have stopped this")

    return slow


TOKEN_INFO = '{ tokenInfo(token: "abcdefabcdefabcdefabcdefabcdefabcdefabcdefa") { valid } }'


@pytest.mark.parametrize("settings_overrides", [{"request_timeout_seconds": 0.3}])
async def test_request_deadline_answers_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import graph.queries

    monkeypatch.setattr(graph.queries, "token_info", slow_token_info(30))
    started = time.perf_counter()
    response = await api.client.post("/graphql", json={"query": TOKEN_INFO})
    assert time.perf_counter() - started < 2
    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == "DEADLINE_EXCEEDED"


@pytest.mark.parametrize("settings_overrides", [{"max_in_flight": 1}])
async def test_in_flight_cap_answers_503_at_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond max_in_flight requests in this process, the next is answered 503 with
    Retry-After at once; /healthz stays answerable."""
    import graph.queries

    gate = asyncio.Event()

    async def held(*_args: Any, **_kwargs: Any) -> Any:
        await gate.wait()
        return core_token_info_result()

    monkeypatch.setattr(graph.queries, "token_info", held)
    assert (await api.client.get("/healthz")).status_code == 200  # builds the stack
    first = asyncio.create_task(api.client.post("/graphql", json={"query": TOKEN_INFO}))
    for _ in range(1000):
        if portal_middleware(api).in_flight == 1:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the first request never got in flight")
    started = time.perf_counter()
    busy = await api.client.post("/graphql", json={"query": "{ __typename }"})
    assert time.perf_counter() - started < 0.5
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["errors"][0]["extensions"]["code"] == "SERVER_BUSY"
    assert (await api.client.get("/healthz")).status_code == 200
    gate.set()
    assert (await first).json()["data"]["tokenInfo"]["valid"] is False
    assert (await api.client.post("/graphql", json={"query": "{ __typename }"})).status_code == 200


def portal_middleware(api: Api) -> Any:
    from graph.middleware import PortalMiddleware

    layer = api.app.middleware_stack
    while not isinstance(layer, PortalMiddleware):
        layer = layer.app
    return layer


def core_token_info_result() -> Any:
    from onboarding.redemption import TokenInfo

    return TokenInfo(
        valid=False,
        error=None,
        username_required=False,
        username=None,
        expires_at=None,
        date_of_birth_required=False,
    )


async def test_client_disconnect_is_one_info_line(
    api: Api, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A client gone before its body arrived: one info access line (status 499), no
    500, no traceback, nothing answered."""
    caplog.set_level(logging.INFO)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"40")],
        "query_string": b"",
        "client": ("203.0.113.9", 4000),
        "server": ("portal.test", 80),
        "scheme": "http",
        "http_version": "1.1",
        "root_path": "",
    }
    await api.app(scope, receive, send)
    assert sent == []
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "http.request" in line]
    assert len(lines) == 1 and "status=499" in lines[0] and "info" in lines[0], err
    assert "client_disconnected" in lines[0]
    assert "Traceback" not in err and "status=500" not in err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records


async def test_hash_queue_is_bounded() -> None:
    """Beyond the hashing threads and queue_limit waiting calls, a hash is refused at
    once instead of queueing without end."""
    import threading

    hasher = core.passwords.Hasher(concurrency=1, queue_limit=1)
    release = threading.Event()
    hasher._pool.submit(release.wait)
    waiting = [asyncio.create_task(hasher.hash("violet-harbor-tuesday-42")) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(core.passwords.HashQueueFull):
        await hasher.hash("violet-harbor-tuesday-42")
    release.set()
    for hashed in await asyncio.gather(*waiting):
        assert hashed.startswith("$argon2id$")
    assert (await hasher.hash("violet-harbor-tuesday-42")).startswith("$argon2id$")
    hasher.close()


@pytest.mark.parametrize(
    "settings_overrides",
    [{"hash_concurrency": 1, "hash_queue_limit": 1, "rate_limit_login": "1000/minute"}],
)
async def test_full_hash_queue_answers_rate_limited(
    api: Api, staff: Staff, mailbox: Mailbox
) -> None:
    """A login that finds the hashing queue full is refused with RATE_LIMITED, counts no
    failure, and is no fault (no masked "Unexpected error")."""
    import threading

    await active_patient(api, staff.token, mailbox)
    hasher = api.services.hasher
    release = threading.Event()
    hasher._pool.submit(release.wait)
    waiting = [
        asyncio.create_task(api.gql(LOGIN, {"u": f"someone{i}", "p": "wrong-password-xyz"}))
        for i in range(2)
    ]
    for _ in range(1000):
        if hasher._pending == 2:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the two logins never queued for the hasher")
    refused = await api.gql(LOGIN, {"u": "patient1", "p": "wrong-password-xyz"})
    release.set()
    await asyncio.gather(*waiting)
    assert refused["data"] is None
    [error] = refused["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["message"] != "Unexpected error."
    from tests.security.support import table_rows

    [account] = await table_rows("portal_account")
    assert account["failed_logins"] == 0
