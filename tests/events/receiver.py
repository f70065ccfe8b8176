"""A real HTTP receiver on loopback (a thread with the standard library's server), so
webhook tests exercise sockets, timeouts and replies, not a mock transport."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    # Answer this many requests with 503 before answering 204.
    fail_next: int = 0
    # When set, the next request is held (no reply) until ``release`` is set.
    hold: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if receiver.hold is not None:
                receiver.hold = None
                receiver.holding.set()
                receiver.release.wait(30)
                return  # the worker was killed meanwhile: no reply
            with receiver.lock:
                status = 503 if receiver.fail_next > 0 else 204
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                receiver.received.append(Received(headers, body, status))
            self.send_response(status)
            reply = b"receiver is down for maintenance" if status == 503 else b""
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/portal"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
