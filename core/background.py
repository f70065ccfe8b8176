"""Work that runs after a response is decided (self-service lookups, mail wake-ups).

Tasks are kept referenced until done and awaited at shutdown; tests call ``drain()`` to
wait for them deterministically instead of sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog

from core import metrics

log = structlog.get_logger("core.background")

T = TypeVar("T")


def own_task(step: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
    """Run one database step (or a run of a loop) in a task of its own. Tortoise binds a
    transaction's connection to the running task's context, and a transaction whose
    BEGIN failed never unbinds it: run in the loop's own task, the next step would reuse
    that dead connection forever (issue 12: workers alive and never sending again)."""
    return asyncio.ensure_future(step())


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coro
        except Exception:
            log.exception("background.failed", task=name)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def every(
    seconds: float, job: Callable[[], Awaitable[Any]], stop: asyncio.Event, name: str
) -> None:
    """Run ``job`` now and then every ``seconds`` until ``stop`` is set; a failing run
    is logged and the next one still happens."""
    while not stop.is_set():
        metrics.WORKER_HEARTBEAT.labels(worker=name).set_to_current_time()
        try:
            await own_task(job)
        except Exception:
            log.exception("periodic.failed", job=name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


async def idle(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Wait until ``wake`` (new work was announced), ``stop`` or ``seconds`` pass,
    whichever comes first: the pause of a polling loop that can also be woken."""
    wake.clear()
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()


async def poll(
    name: str,
    run_once: Callable[[], Awaitable[int]],
    wake: asyncio.Event,
    stop: asyncio.Event,
    seconds: float,
    *,
    fatal: tuple[type[BaseException], ...] = (),
) -> None:
    """The loop of a queue worker (the mail dispatcher, the webhook deliveries): claim
    and handle a batch with ``run_once`` (how many it handled), again at once while there
    was work, else wait for ``wake``, ``stop`` or ``seconds``. Each run is a task of its
    own (``own_task``); a failing run is logged and the loop goes on, except for the
    ``fatal`` exceptions, which end it (the mail worker's "let the supervisor restart
    me"). The heartbeat metric says the loop is turning."""
    while not stop.is_set():
        metrics.WORKER_HEARTBEAT.labels(worker=name).set_to_current_time()
        try:
            handled = await own_task(run_once)
        except fatal:
            raise
        except Exception:  # a database or network hiccup must not end the loop
            log.exception("worker.run_failed", worker=name)
            handled = 0
        if handled:
            continue
        await idle(wake, stop, seconds)
