"""Strawberry's schema-extension runner, with each hook's lookup done once per class.

Per request and per lifecycle step (operation, parsing, validation, execution),
Strawberry's runner asks every extension for its hook: it compares the method with
SchemaExtension's, asks ``inspect`` whether it is a generator and wraps it with
``contextlib.contextmanager`` (``functools.wraps`` included). Seven extensions, four
steps: 28 such lookups per request, ~3% of an Onboarding page's CPU (issue 15, py-spy
of ``bench.page_cpu``). All of it depends on the extension's class only, so it is kept
per class; each request still gets its own extension instances and context managers.
What a class's hook is not (a plain or async callable) goes to Strawberry's own lookup.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from functools import partial
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

# (extension class, hook name) -> (context-manager factory taking the extension, is
# async), None for no hook, or _STRAWBERRY for a hook Strawberry's lookup handles.
_STRAWBERRY = object()
_HOOKS: dict[tuple[type, str], Any] = {}


def _hook_of(cls: type, name: str) -> Any:
    fn = getattr(cls, name)
    if fn is getattr(SchemaExtension, name):
        return None
    if inspect.isgeneratorfunction(fn):
        return contextlib.contextmanager(fn), False
    if inspect.isasyncgenfunction(fn):
        return contextlib.asynccontextmanager(fn), True
    return _STRAWBERRY


class _ByClass(ExtensionContextManagerBase):
    __slots__ = ()

    def get_hook(self, extension: SchemaExtension) -> WrappedHook | None:
        key = (type(extension), self.HOOK_NAME)
        try:
            found = _HOOKS[key]
        except KeyError:
            found = _HOOKS[key] = _hook_of(type(extension), self.HOOK_NAME)
        if found is None:
            return None
        if found is _STRAWBERRY:
            return super().get_hook(extension)
        make: Callable[..., Any]
        make, is_async = found
        return WrappedHook(extension=extension, hook=partial(make, extension), is_async=is_async)


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
