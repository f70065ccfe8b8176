"""Strawberry's schema-extension runner, with each hook's lookup done once per class.

Per request and per lifecycle step (operation, parsing, validation, execution),
Strawberry's runner asks every extension for its hook: it compares the method with
SchemaExtension's, asks ``inspect`` whether it is a generator and wraps it with
``contextlib.contextmanager`` (``functools.wraps`` included). Seven extensions, four
steps: 28 such lookups per request, ~3% of an Onboarding page's CPU (issue 15, py-spy
of ``bench.page_cpu``). All of it depends on the extensions' classes only, so it is
kept per list of classes; each request still gets its own extension instances and
context managers. A step with one synchronous hook (most of ours) enters it without an
exit stack. A hook that is no generator (a plain or async callable) goes to
Strawberry's own lookup.
"""

from __future__ import annotations

import contextlib
import inspect
from functools import partial
from types import TracebackType
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
    WrappedHook,
)
from strawberry.extensions.runner import SchemaExtensionsRunner

_STRAWBERRY = object()
# (hook name, the extensions' classes in order) -> [(index, hook)] for the extensions
# that have the hook, ``hook`` as _hook_of gives it. A schema's extension list is
# fixed: a few keys.
_STEPS: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
_NOTHING = contextlib.nullcontext()


def _hook_of(cls: type, name: str) -> Any:
    """(context-manager factory taking the extension, is async), None for no hook, or
    _STRAWBERRY for a hook Strawberry's lookup handles (a plain or async callable)."""
    fn = getattr(cls, name)
    if fn is getattr(SchemaExtension, name):
        return None
    if inspect.isgeneratorfunction(fn):
        return contextlib.contextmanager(fn), False
    if inspect.isasyncgenfunction(fn):
        return contextlib.asynccontextmanager(fn), True
    return _STRAWBERRY


class _ByClass(ExtensionContextManagerBase):
    """One lifecycle step's hooks, found from the extensions' classes."""

    def __init__(self, extensions: list[SchemaExtension]) -> None:
        key = (self.HOOK_NAME, *map(type, extensions))
        found = _STEPS.get(key)
        if found is None:
            found = _STEPS[key] = [
                (i, hook)
                for i, extension in enumerate(extensions)
                if (hook := _hook_of(type(extension), self.HOOK_NAME)) is not None
            ]
        self.default_hook = getattr(SchemaExtension, self.HOOK_NAME)
        self.hooks = []
        for i, hook in found:
            extension = extensions[i]
            if hook is _STRAWBERRY:
                wrapped = super().get_hook(extension)
                assert wrapped is not None
                self.hooks.append(wrapped)
            else:
                make, is_async = hook
                self.hooks.append(WrappedHook(extension, partial(make, extension), is_async))
        self._single: Any = None

    async def __aenter__(self) -> None:
        # Most steps have one synchronous hook (or none): entered as it is, without an
        # exit stack. Strawberry's own exit ignores what the stack returns, so an
        # exception is never suppressed either way.
        hooks = self.hooks
        if not hooks or (len(hooks) == 1 and not hooks[0].is_async):
            self._single = hooks[0].hook() if hooks else _NOTHING
            self._single.__enter__()
            return
        await super().__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        single = self._single
        if single is None:
            await super().__aexit__(exc_type, exc_val, exc_tb)
        else:
            single.__exit__(exc_type, exc_val, exc_tb)


class _Operation(_ByClass, OperationContextManager):
    __slots__ = ()


class _Parsing(_ByClass, ParsingContextManager):
    __slots__ = ()


class _Validation(_ByClass, ValidationContextManager):
    __slots__ = ()


class _Executing(_ByClass, ExecutingContextManager):
    __slots__ = ()


class ExtensionsRunner(SchemaExtensionsRunner):
    def operation(self) -> OperationContextManager:
        return _Operation(self.extensions)

    def parsing(self) -> ParsingContextManager:
        return _Parsing(self.extensions)

    def validation(self) -> ValidationContextManager:
        return _Validation(self.extensions)

    def executing(self) -> ExecutingContextManager:
        return _Executing(self.extensions)
