"""Events and webhooks, measured against references from the same run:

1. **The event write's cost on a bulk invitation**: ``send_invitations`` for N patients
   (default 10,000) run in alternating rounds (a) with the event write switched off
   (``onboarding.events.emit`` replaced by a no-op: the service as it was before
   events), (b) as shipped with no webhook endpoint (events written), (c) with one
   endpoint subscribed to every type (events and N delivery rows). Medians; ratios b/a
   and c/b.
2. **Delivery throughput**: one ``WebhookWorker`` draining the N deliveries of a round
   to a local receiver (a uvicorn process answering 204), as events per second, next to
   a bare reference in the same run: httpx posting the same number of signed bodies to
   the same receiver with the same concurrency, no database (``--deliveries``, default
   2,000 of the round's deliveries).

    .venv/bin/python -m bench.webhooks --backend postgres   # or sqlite; --patients N --rounds R

PostgreSQL: the database (``--postgres-url``, default
``postgres://postgres@127.0.0.1:5432/portal_bench_webhooks``) is dropped and recreated;
its name must contain ``bench``. SQLite: a file under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import free_port, require_loopback
from bench.data import reset_postgres, reset_sqlite
from bench.worker import send

RESULTS = Path(__file__).with_name("results")

RECEIVER = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


async def start_receiver() -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    path = RESULTS / "receiver_app.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RECEIVER)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "receiver_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        cwd=path.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    import httpx

    url = f"http://127.0.0.1:{port}/hook"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.post(url, content=b"{}")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    return process, url


async def prepare(patients: int) -> tuple[Any, list[int]]:
    from models import ActorType, Patient
    from onboarding.actor import Actor
    from onboarding.admin import create_practice, create_staff
    from onboarding.demo import generate_patients, insert_patients

    practice = await create_practice("Bench Webhooks Clinic")
    staff, _ = await create_staff(practice.id, "Bench Staff")
    charts = generate_patients(practice.id, patients, seed=7, email_share=1.0)
    for i, chart in enumerate(charts):
        # Every patient invitable, each address its own (no shared-address refusals).
        chart.chart_status = "ACTIVE"  # type: ignore[assignment]
        chart.portal_enabled = True
        chart.email = f"patient{i}@example.com"
        chart.normalise_keys()
    await insert_patients(charts)
    ids = list(
        await Patient.filter(practice_id=practice.id).order_by("id").values_list("id", flat=True)
    )
    actor = Actor(ActorType.STAFF, staff.id, practice.id, "127.0.0.1", "bench")
    return actor, ids


async def bulk_round(actor: Any, ids: list[int], settings: Any) -> float:
    from models import OutboxMessage

    started = time.perf_counter()
    results = await send(actor, ids, settings)
    elapsed = time.perf_counter() - started
    sent = sum(1 for r in results if r.invitation and not r.problems)
    assert sent == len(ids), f"only {sent} of {len(ids)} invited"
    # The mail is not the subject: keep the outbox from growing between rounds.
    await OutboxMessage.all().delete()
    return elapsed


async def run(args: argparse.Namespace) -> None:
    from core.clock import utcnow
    from core.settings import Settings
    from models import WebhookDelivery, WebhookEndpoint
    from models.database import connect, disconnect, migrate
    from onboarding import events
    from onboarding.webhook_worker import WebhookWorker
    from onboarding.webhooks import new_secret, sign

    if args.backend == "postgres":
        url = args.postgres_url
        require_loopback(url)
        await reset_postgres(url)
    else:
        url = f"sqlite://{RESULTS / 'webhooks-bench.sqlite3'}"
        reset_sqlite(url)
    os.environ["PORTAL_DATABASE_URL"] = url
    settings = Settings(webhook_allow_private=True, mail_backend="file")  # type: ignore[call-arg]
    events.configure(settings)
    await migrate(url)
    await connect(url)
    receiver, receiver_url = await start_receiver()
    try:
        actor, ids = await prepare(args.patients)
        real_emit = events.emit

        async def no_emit(*_: Any, **__: Any) -> list[int]:
            return []

        timings: dict[str, list[float]] = {"off": [], "events": [], "endpoint": []}
        endpoint = None
        modes = ["off", "events", "endpoint"]
        for n in range(args.rounds):
            # The order turns every round, so no mode always follows the same one (the
            # database's autovacuum and caches then weigh on every mode alike).
            for mode in modes[n % 3 :] + modes[: n % 3]:
                events.emit = no_emit if mode == "off" else real_emit  # type: ignore[assignment]
                if mode == "endpoint":
                    endpoint = await WebhookEndpoint.create(
                        practice_id=actor.practice_id,
                        url=receiver_url,
                        event_types=[],
                        secret=new_secret(),
                        created_at=utcnow(),
                    )
                timings[mode].append(await bulk_round(actor, ids, settings))
                if endpoint is not None and mode == "endpoint":
                    # Keep one round's deliveries for the throughput phase.
                    await WebhookEndpoint.filter(id=endpoint.id).update(enabled=False)
        events.emit = real_emit  # type: ignore[assignment]
        medians = {k: statistics.median(v) for k, v in timings.items()}

        # Throughput: the last round's deliveries, one worker.
        assert endpoint is not None
        await WebhookEndpoint.filter(id=endpoint.id).update(enabled=True)
        pending = await WebhookDelivery.filter(endpoint_id=endpoint.id, status="pending")
        keep = {d.id for d in sorted(pending, key=lambda d: -d.id)[: args.deliveries]}
        await (
            WebhookDelivery.filter(endpoint_id=endpoint.id, status="pending")
            .exclude(id__in=list(keep))
            .update(status="failed")
        )
        worker = WebhookWorker(settings)
        started = time.perf_counter()
        delivered = await worker.drain()
        worker_seconds = time.perf_counter() - started
        await worker.close()
        ok = await WebhookDelivery.filter(endpoint_id=endpoint.id, status="delivered").count()

        # Reference: the same number of signed posts, same concurrency, no database.
        import httpx

        secret = new_secret()
        body = b'{"type":"invitation.sent","timestamp":"2026-01-01T00:00:00+00:00","data":{}}'
        gate = asyncio.Semaphore(settings.webhook_concurrency)
        async with httpx.AsyncClient(timeout=10) as client:

            async def post(i: int) -> None:
                ts = int(time.time())
                headers = {
                    "webhook-id": f"evt_{i}",
                    "webhook-timestamp": str(ts),
                    "webhook-signature": sign(secret, f"evt_{i}", ts, body),
                }
                async with gate:
                    response = await client.post(receiver_url, content=body, headers=headers)
                    assert response.status_code == 204

            started = time.perf_counter()
            await asyncio.gather(*(post(i) for i in range(ok)))
            reference_seconds = time.perf_counter() - started

        n = args.patients
        print(f"backend {args.backend}, {n} patients, {args.rounds} rounds (medians)")
        print(f"  bulk invitation, event write off : {medians['off']:.3f} s")
        print(
            f"  bulk invitation, events written  : {medians['events']:.3f} s"
            f"  ratio {medians['events'] / medians['off']:.2f}x"
        )
        print(
            f"  bulk invitation, + one endpoint  : {medians['endpoint']:.3f} s"
            f"  ratio {medians['endpoint'] / medians['events']:.2f}x (to no endpoint)"
        )
        print(
            "  every round (s): "
            + "; ".join(f"{k} " + ", ".join(f"{t:.2f}" for t in v) for k, v in timings.items())
        )
        print(
            f"  worker delivered {ok} of {delivered} attempted in {worker_seconds:.2f} s:"
            f" {ok / worker_seconds:.0f} events/s"
        )
        print(
            f"  reference (httpx, no database)   : {ok / reference_seconds:.0f} posts/s"
            f"  worker/reference {reference_seconds / worker_seconds:.2f}"
        )
    finally:
        receiver.terminate()
        await receiver.wait()
        await disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/portal_bench_webhooks"
        ),
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--deliveries", type=int, default=2000, help="deliveries in the throughput phase"
    )
    args = parser.parse_args()
    from core.logging import configure_logging
    from core.settings import Settings

    configure_logging(Settings())
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
