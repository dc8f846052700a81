"""User hooks: teams' own enrich/filter steps inside the transform.

A hook is a plain function::

    def my_hook(event: dict) -> dict | None: ...

It receives a *normalised* event (schema field order; ``timestamp`` and
``ingested_at`` in UTC ms; ``properties`` as a dict) and returns it, changed
or not, or ``DROP`` to drop it (the record is answered ``Dropped`` and counted
as ``hook_dropped:<name>``; ``None`` still means the same, for hooks written
before ``DROP``). Whatever it returns is checked against the schema
again. An exception fails only that record (``hook_failed:<name>``).

Hooks are named in ``BXB_HOOKS`` as comma-separated ``module:function``
entries and loaded once, at cold start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, final


@final
class _Drop:
    """The type of ``DROP``: one instance, compared by identity."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP: Final = _Drop()
"""What a hook returns to drop the event."""

HookFunction = Callable[[dict[str, Any]], "dict[str, Any] | _Drop | None"]


def is_drop(result: object) -> bool:
    return result is DROP or result is None


@dataclass(frozen=True)
class Hook:
    name: str
    function: HookFunction


class HookConfigError(ValueError):
    pass


def load_hooks(spec: str) -> tuple[Hook, ...]:
    """Parse ``"pkg.mod:func, other.mod:func"`` into callables, failing loudly."""
    hooks = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        module_name, sep, attr = entry.partition(":")
        if not sep or not module_name or not attr:
            raise HookConfigError(f"hook {entry!r} must look like 'module:function'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise HookConfigError(f"hook {entry!r}: cannot import {module_name!r} ({exc})") from None
        function = getattr(module, attr, None)
        if not callable(function):
            raise HookConfigError(f"hook {entry!r}: {module_name}.{attr} is not a callable")
        hooks.append(Hook(name=attr, function=function))
    return tuple(hooks)
