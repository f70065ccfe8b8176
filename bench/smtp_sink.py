"""A local SMTP server (aiosmtpd) that accepts and counts messages, in its own process.

``python -m bench.smtp_sink --port N``; on SIGINT/SIGTERM it prints
``SINKJSON {"messages": n, "bytes": b}`` and exits."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from aiosmtpd.smtp import SMTP


class CountingHandler:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        self.bytes += len(envelope.original_content or b"")
        return "250 2.0.0 OK: queued"


async def serve(port: int) -> None:
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.bench.invalid", ident="bench sink"),
        host="127.0.0.1",
        port=port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    print(
        "SINKJSON " + json.dumps({"messages": handler.messages, "bytes": handler.bytes}), flush=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
