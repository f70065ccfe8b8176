"""What a hash-only (persisted) request saves on the Onboarding page, against the same
request with the full document text, measured in one run (SPEC 8.5).

    .venv/bin/python -m bench.persisted [--patients 2000] [--rounds 400]

The real app (create_app) on a fresh SQLite database, driven in process over httpx's
ASGI transport so only the service's own work is timed; both kinds of request alternate
so drift hits them alike. It also times parse + validation of the document with
graphql-core, the work the server's parser and validation caches save on a repeat of
the same text and that a trusted-documents deployment never has to do for new text.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import statistics
import tempfile
import time

import httpx
import orjson
from graphql import parse, validate

from bench.workload import ONBOARDING_QUERY


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from core.settings import Settings
    from graph.app import create_app
    from models.database import connect, disconnect, migrate
    from onboarding.admin import create_practice, create_staff
    from onboarding.demo import generate_patients, insert_patients

    url = f"sqlite://{tempfile.mkdtemp(prefix='bench-persisted-')}/db.sqlite3"
    await migrate(url)
    await connect(url)
    practice = await create_practice("Bench Clinic")
    _, token = await create_staff(practice.id, "Bench")
    await insert_patients(generate_patients(practice.id, args.patients, seed=7))
    settings = Settings(_env_file=None, database_url=url, mail_dispatch_in_server=False)  # type: ignore[call-arg]
    app = create_app(settings, manage_database=False)
    digest = hashlib.sha256(ONBOARDING_QUERY.encode()).hexdigest()
    variables = {"first": 50}
    full = orjson.dumps(
        {
            "query": ONBOARDING_QUERY,
            "variables": variables,
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
        }
    )
    hashed = orjson.dumps(
        {"variables": variables, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    times: dict[str, list[float]] = {"full text": [], "hash only": []}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        first = await client.post("/graphql", content=full, headers=headers)  # registers
        assert first.json()["data"]["onboarding"]["edges"], first.text
        for _ in range(20):  # warm-up
            await client.post("/graphql", content=hashed, headers=headers)
        for _ in range(args.rounds):
            for name, body in (("full text", full), ("hash only", hashed)):
                started = time.perf_counter()
                response = await client.post("/graphql", content=body, headers=headers)
                times[name].append(time.perf_counter() - started)
                assert response.status_code == 200 and "errors" not in response.json()
    await disconnect()

    schema = app.routes[0].app.schema._schema  # type: ignore[attr-defined]
    parse_validate = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        errors = validate(schema, parse(ONBOARDING_QUERY))
        parse_validate.append(time.perf_counter() - started)
        assert not errors

    full_ms = statistics.median(times["full text"]) * 1000
    hash_ms = statistics.median(times["hash only"]) * 1000
    pv_ms = statistics.median(parse_validate) * 1000
    print(f"Onboarding page, 50 rows of {args.patients} patients, {args.rounds} rounds each")
    print(f"request body      full text {len(full):5d} B   hash only {len(hashed):5d} B   ratio {len(hashed) / len(full):.2f}")
    print(f"median latency    full text {full_ms:6.2f} ms  hash only {hash_ms:6.2f} ms  ratio {hash_ms / full_ms:.3f}")
    print(f"parse+validate of the document without the caches: {pv_ms:.2f} ms ({pv_ms / full_ms:.1%} of a full-text request)")


if __name__ == "__main__":
    asyncio.run(main())
