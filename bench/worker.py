"""Benchmark steps that run the service's own code in a process of their own, against
the benchmark database (settings from the PORTAL_* environment ``bench.run`` sets):

- ``park``: sets the outbox's pending messages aside (status failed, "set aside by
  bench"), so the dispatch figure counts exactly the invitation mail queued after it;
- ``dispatch``: the mail worker, ``mail.dispatcher.Dispatcher.drain()`` to the SMTP
  server in PORTAL_SMTP_*, timed;
- ``invite``: ``onboarding.invitations.send_invitations`` called directly, once with all
  the ids (bulk) and once per id for a sample (one-by-one), timed in total and in the
  database (time spent awaiting Tortoise's database client).

Each prints one ``WORKJSON {...}`` line."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any


class DbTimer:
    """Time spent inside the database client's execute methods (outermost call only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.statements = 0
        self.timings: list[tuple[float, str]] = []
        self._depth = 0

    def install(self) -> None:
        from tortoise.backends.base.client import BaseDBAsyncClient

        names = ("execute_insert", "execute_many", "execute_query", "execute_query_dict")
        seen: set[type] = set()
        stack = list(BaseDBAsyncClient.__subclasses__())
        while stack:
            cls = stack.pop()
            if cls in seen:
                continue
            seen.add(cls)
            stack.extend(cls.__subclasses__())
            for name in names:
                if name in cls.__dict__:
                    setattr(cls, name, self._wrap(cls.__dict__[name]))

    def _wrap(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        timer = self

        @wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            if timer._depth:
                return await fn(*args, **kwargs)
            timer._depth += 1
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                timer.seconds += spent
                timer.statements += 1
                sql = args[1] if len(args) > 1 and isinstance(args[1], str) else fn.__name__
                timer.timings.append((spent, " ".join(sql.split())[:90]))
                timer._depth -= 1

        return timed


async def park(url: str) -> dict[str, Any]:
    from models import OutboxMessage, OutboxStatus

    n = await OutboxMessage.filter(status=OutboxStatus.PENDING).update(
        status=OutboxStatus.FAILED, last_error="set aside by bench"
    )
    return {"parked": n}


async def dispatch(url: str) -> dict[str, Any]:
    from core.settings import Settings
    from mail.dispatcher import Dispatcher
    from models import OutboxMessage, OutboxStatus
    from onboarding.delivery import record_delivery_outcome

    settings = Settings()
    pending = await OutboxMessage.filter(status=OutboxStatus.PENDING).count()
    dispatcher = Dispatcher(settings, on_outcome=record_delivery_outcome)
    started = time.perf_counter()
    stats = await dispatcher.drain()
    seconds = time.perf_counter() - started
    return {
        "pending": pending,
        "sent": stats.sent,
        "retried": stats.retried,
        "failed": stats.failed,
        "seconds": seconds,
        "batch_size": dispatcher.batch_size,
    }


async def send(actor: Any, ids: list[int], settings: Any) -> list[Any]:
    """One call of the service's send_invitations, whichever of its signatures is in
    place (plain ids and dry_run, or a BulkRequest)."""
    import inspect

    from onboarding.invitations import send_invitations

    raw = [str(i) for i in ids]
    if "dry_run" in inspect.signature(send_invitations).parameters:
        return await send_invitations(  # type: ignore[no-any-return]
            actor, raw, confirm_shared_email=True, dry_run=False, settings=settings
        )
    from onboarding.bulk import BulkRequest

    outcome = await send_invitations(
        actor, BulkRequest(patient_ids=raw), confirm_shared_email=True, settings=settings
    )
    if outcome.problems:
        raise RuntimeError(f"send_invitations refused the request: {outcome.problems}")
    return outcome.results  # type: ignore[no-any-return]


async def invite(
    url: str, practice_id: int, staff_id: int, bulk_ids: list[int], single_ids: list[int]
) -> dict[str, Any]:
    from core.settings import Settings
    from models import ActorType
    from onboarding.actor import Actor

    settings = Settings()
    actor = Actor(ActorType.STAFF, staff_id, practice_id, "127.0.0.1", "bench")
    timer = DbTimer()
    timer.install()

    started = time.perf_counter()
    results = await send(actor, bulk_ids, settings)
    bulk_seconds = time.perf_counter() - started
    bulk_db, bulk_statements = timer.seconds, timer.statements
    bulk_sent = sum(1 for r in results if r.invitation and not r.problems)
    slowest = sorted(timer.timings, reverse=True)[:6]

    timer.seconds, timer.statements = 0.0, 0
    started = time.perf_counter()
    single_sent = 0
    for pid in single_ids:
        rows = await send(actor, [pid], settings)
        single_sent += sum(1 for r in rows if r.invitation and not r.problems)
    single_seconds = time.perf_counter() - started
    return {
        "bulk_requested": len(bulk_ids),
        "bulk_sent": bulk_sent,
        "bulk_seconds": bulk_seconds,
        "bulk_db_seconds": bulk_db,
        "bulk_statements": bulk_statements,
        "bulk_slowest": [(round(t, 4), sql) for t, sql in slowest],
        "single_requested": len(single_ids),
        "single_sent": single_sent,
        "single_seconds": single_seconds,
        "single_db_seconds": timer.seconds,
        "single_statements": timer.statements,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from models.database import connect, disconnect

    await connect(args.database_url)
    try:
        if args.command == "park":
            return await park(args.database_url)
        if args.command == "dispatch":
            return await dispatch(args.database_url)
        ids = args.ids
        return await invite(
            args.database_url, args.practice_id, args.staff_id, ids["bulk"], ids["single"]
        )
    finally:
        await disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["park", "dispatch", "invite"])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--practice-id", type=int)
    parser.add_argument("--staff-id", type=int)
    parser.add_argument("--ids-file")
    args = parser.parse_args()
    from core.logging import configure_logging
    from core.settings import Settings

    configure_logging(Settings())
    args.ids = json.loads(Path(args.ids_file).read_text()) if args.ids_file else None
    result = asyncio.run(run(args))
    print("WORKJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
