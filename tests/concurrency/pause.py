"""Hold requests at a named checkpoint (onboarding/checkpoints.py) while the test commits
something else, then let them go: the interleaving a race needs, made deterministic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from onboarding import checkpoints

WAIT = 20.0  # seconds; generous, only reached when a request never gets to the point


@dataclass
class Pause:
    name: str
    hold: int | None = None
    arrived: int = 0
    _arrivals: asyncio.Condition = field(default_factory=asyncio.Condition)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def hook(self, _: str) -> None:
        async with self._arrivals:
            self.arrived += 1
            held = self.hold is None or self.arrived <= self.hold
            self._arrivals.notify_all()
        if held:
            await self._release.wait()

    async def reached(self, count: int = 1) -> None:
        """Wait until ``count`` requests in all are held here."""

        async def enough() -> None:
            async with self._arrivals:
                await self._arrivals.wait_for(lambda: self.arrived >= count)

        await asyncio.wait_for(enough(), WAIT)

    def release(self) -> None:
        self._release.set()


@asynccontextmanager
async def paused_at(name: str, hold: int | None = None) -> AsyncIterator[Pause]:
    """Requests that reach ``name`` wait until ``release()`` (the first ``hold`` of them;
    all when None); held requests resume in the order they arrived."""
    pause = Pause(name, hold)
    checkpoints.install(name, pause.hook)
    try:
        yield pause
    finally:
        checkpoints.remove(name)
        pause.release()
