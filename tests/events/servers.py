"""Real server processes (``portal serve``, uvicorn) on the test database, and a minimal
graphql-transport-ws client over the `websockets` library."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets
from tortoise import connections

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    conn = connections.get("default")
    return POSTGRES_URL or f"sqlite://{conn.filename}"  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def server_process(tmp_path: Path, **settings: str) -> AsyncIterator[str]:
    """Yields the base URL of a `portal serve` process; killed afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        PORTAL_DATABASE_URL=database_url(),
        PORTAL_MAIL_DISPATCH_IN_SERVER="false",
        PORTAL_MAIL_DIR=str(tmp_path / f"mail-{port}"),
    )
    env.update({f"PORTAL_{k.upper()}": v for k, v in settings.items()})
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import portal_cli; portal_cli.main()", "serve",
            "--port", str(port), cwd=ROOT, env=env, stdout=out, stderr=out,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient() as client:
                for _ in range(300):
                    try:
                        if (await client.get(f"{base}/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if process.returncode is not None:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("server did not start: " + log.read_text()[-3000:])
            assert process.returncode is None, log.read_text()[-3000:]
            yield base
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def gql(base: str, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{base}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.json()


class LiveClient:
    """One graphql-transport-ws connection with one subscription."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def next(self, wait: float) -> dict[str, Any] | None:
        """The next pushed change, or None when nothing came within ``wait`` seconds."""
        try:
            raw = await asyncio.wait_for(self.ws.recv(), wait)
        except TimeoutError:
            return None
        message = json.loads(raw)
        assert message["type"] == "next", message
        return message["payload"]["data"]["onboardingChanged"]


@asynccontextmanager
async def live_client(
    base: str, token: str, query: str, variables: dict[str, Any] | None = None
) -> AsyncIterator[LiveClient]:
    url = base.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        await ws.send(
            json.dumps(
                {"id": "1", "type": "subscribe",
                 "payload": {"query": query, "variables": variables or {}}}
            )
        )
        yield LiveClient(ws)
