"""Python CPU per Onboarding page: the service against the honest reference, in process.

``python -m bench.page_cpu --postgres-url URL --plan plan.json [--rounds 300] [--shape first]
[--profile out.prof] [--service-env PORTAL_X=VALUE] [--compare-generic] [--overhead] [--raw]``

Both apps (the real service from ``graph.app.create_app`` with production settings, and
``bench.reference``'s honest route) answer the same requests over httpx's ASGI transport
in one process, alternating, and each request's CPU time of this process is taken
(``time.process_time``: Python, the driver and the event loop; PostgreSQL's own work runs
in its server process and is not in it). CPU time, unlike latency, hardly moves when
other programs share the machine, so a change's effect shows on a busy machine too.
The difference service - reference is what the service's Python adds to a page.
``--profile`` writes a cProfile of the service's requests alone (pstats file) and prints
its top functions. ``--compare-generic`` adds, in the same alternation, the same service
built with ``fast_execution=False`` (every field through graphql-core's generic
completion, graph/execution.py): the fast path's saving, measured in one run. ``--overhead`` also times, in the same
alternation, the service answering ``{ __typename }`` without and with the staff token:
what any request costs before its page. ``--raw`` calls the ASGI apps directly instead
of through httpx: httpx's client spends about 0.5 ms of CPU per request on each side in
this process, which dilutes the ratio; without it the ratio is the apps' own (uvicorn's
share, equal for both, then dilutes it again under load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any


class _RawResponse:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content


class _RawClient:
    """``post`` of an httpx client, as one direct ASGI call: no client-side work in the
    measured CPU beyond building the scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(self, path: str, content: bytes | str, headers: dict[str, str]) -> Any:
        body = content.encode() if isinstance(content, str) else content
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        status, chunks = 0, []

        async def receive() -> dict[str, Any]:
            return pending.pop() if pending else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"host", b"b"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("b", 80),
            "state": {},
        }
        await self.app(scope, receive, send)
        return _RawResponse(status, b"".join(chunks))


async def run(args: argparse.Namespace) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import httpx

    from bench.pages import shape_requests
    from bench.servers import BENCH_SECRET_KEY

    os.environ["BENCH_REF_DATABASE_URL"] = args.postgres_url
    os.environ["BENCH_REF_SECRET_KEY"] = BENCH_SECRET_KEY
    for item in args.service_env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    from bench import reference
    from core.settings import Settings
    from graph.app import create_app

    reference.DATABASE_URL = args.postgres_url
    reference.IS_SQLITE = args.postgres_url.startswith("sqlite")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        env="production",
        database_url=args.postgres_url,
        secret_key=BENCH_SECRET_KEY,
        mail_dispatch_in_server=False,
        allow_insecure_defaults=True,
        link_base_url="https://portal.example.invalid/activate",
        mail_backend="smtp",
    )
    service = create_app(settings)
    plan = args.plan_data
    requests = shape_requests(plan, args.shape, args.rounds, seed=5, largest=False)
    apps = {"service": service, "honest": reference.app}
    if args.compare_generic:
        # The database connection is the first app's (Tortoise's is process-wide).
        apps["generic"] = create_app(settings, manage_database=False, fast_execution=False)
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    # Timed by CPU time, like the figures: time waiting for PostgreSQL (or preempted by
    # other programs) is not charged to the function that was running.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, Any] = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            if args.raw:
                clients[name] = _RawClient(app)
            else:
                clients[name] = await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
                )
        for n, (token, body) in enumerate(requests):
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            answers = {}
            for name, client in clients.items():
                profiling = profiler is not None and name == "service" and n >= 20
                started = time.process_time()
                if profiling:
                    profiler.enable()  # type: ignore[union-attr]
                response = await client.post("/graphql", content=body, headers=headers)
                if profiling:
                    profiler.disable()  # type: ignore[union-attr]
                spent = time.process_time() - started
                if n >= 20:  # warm caches first
                    cpu[name].append(spent)
                answers[name] = response.content
            if any(answer != answers["honest"] for answer in answers.values()):
                raise SystemExit(f"answers differ for {body}")
            if args.overhead:
                # What the service spends on a request before any page: `{ __typename }`
                # through the same middleware, view and extensions, without and with the
                # staff token (its lookup is one statement).
                for name, auth in (("typename", {}), ("typename+token", headers)):
                    started = time.process_time()
                    response = await clients["service"].post(
                        "/graphql",
                        content=b'{"query":"{ __typename }"}',
                        headers={"Content-Type": "application/json", **auth},
                    )
                    if n >= 20:
                        cpu.setdefault(name, []).append(time.process_time() - started)
                    assert response.status_code == 200 and b"errors" not in response.content
    svc = statistics.mean(cpu["service"]) * 1000
    ref = statistics.mean(cpu["honest"]) * 1000
    print(
        f"CPU per page ({args.shape}, {len(cpu['service'])} pages each, byte-identical answers,"
        f" {'direct ASGI calls' if args.raw else 'httpx ASGI transport'}):"
        f" service {svc:.2f} ms, honest reference {ref:.2f} ms, difference {svc - ref:.2f} ms,"
        f" ratio {svc / ref:.1f}x"
    )
    if args.compare_generic:
        gen = statistics.mean(cpu["generic"]) * 1000
        print(
            f"same service with graphql-core's generic completion (fast_execution=False):"
            f" {gen:.2f} ms, difference {gen - ref:.2f} ms, ratio {gen / ref:.1f}x;"
            f" fast path saves {gen - svc:.2f} ms per page"
        )
    if args.overhead:
        bare = statistics.mean(cpu["typename"]) * 1000
        token = statistics.mean(cpu["typename+token"]) * 1000
        print(
            f"the service's fixed cost per request: {{ __typename }} {bare:.2f} ms,"
            f" with the staff token {token:.2f} ms"
        )
    if profiler is not None:
        profiler.dump_stats(args.profile)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", required=True)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--shape", default="first")
    ap.add_argument("--profile", metavar="FILE")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--service-env", action="append", default=[])
    ap.add_argument(
        "--overhead",
        action="store_true",
        help="also measure the service's `{ __typename }` without and with the token",
    )
    ap.add_argument(
        "--compare-generic",
        action="store_true",
        help="also measure the service with graphql-core's generic completion",
    )
    ap.add_argument(
        "--raw",
        action="store_true",
        help="call the ASGI apps directly, without httpx's client work in the figures",
    )
    args = ap.parse_args()
    # The service's request logs go to a file: their cost stays in, the noise out.
    sys.stdout.flush()
    args.plan_data = json.loads(Path(args.plan).read_text())
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
