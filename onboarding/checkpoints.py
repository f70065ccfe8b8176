"""Named points in the workflows where slow work has finished and the write is about to be
decided: a login verified its password, a redemption hashed its new one.

Production never pauses here (no hook is installed, the call is one dict lookup). Tests
install a hook to hold one request at such a point while another commits, which makes
the interleavings that races depend on deterministic (tests/concurrency/)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Hook = Callable[[str], Awaitable[None]]

_hooks: dict[str, Hook] = {}


async def reached(name: str) -> None:
    hook = _hooks.get(name)
    if hook is not None:
        await hook(name)


def install(name: str, hook: Hook) -> None:
    _hooks[name] = hook


def remove(name: str) -> None:
    _hooks.pop(name, None)
