"""Reversible attribute replacement, the one mechanism every adapter uses to patch moto; and the
lock wrapper the atomicity adapters put in place."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

_MISSING = object()


class _Generation:
    """Counts every replacement and restore: a cache of what moto's classes hold keys on it."""

    value = 0


def patch_generation() -> int:
    return _Generation.value


@dataclass(frozen=True)
class _Saved:
    owner: object
    name: str
    original: object  # _MISSING when the attribute was inherited rather than set on `owner`


class PatchSet:
    """Replacements of attributes on moto's modules and classes, undone in reverse order by `restore`."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter
        self._saved: list[_Saved] = []
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._saved)

    def replace(self, owner: object, name: str, value: object, *, adding: bool = False) -> object:
        """Set `owner.name = value`; return what `owner.name` resolved to before (the thing to wrap).

        A name `owner` lacks is an error (moto renamed what the adapter patches: the patch would do
        nothing), unless `adding` (an API moto does not implement), when it is added and removed
        again by `restore`.
        """
        if not adding and not hasattr(owner, name):
            raise AttributeError(
                f"adapter {self.adapter}: {getattr(owner, '__name__', owner)!s} has no {name!r} to patch"
                " (was moto upgraded past the version the adapter was written against?)"
            )
        with self._lock:
            current = getattr(owner, name, None)
            own = vars(owner).get(name, _MISSING) if hasattr(owner, "__dict__") else current
            self._saved.append(_Saved(owner, name, own))
            setattr(owner, name, value)
            _Generation.value += 1
            return current

    def restore(self) -> None:
        with self._lock:
            while self._saved:
                saved = self._saved.pop()
                if saved.original is _MISSING:
                    delattr(saved.owner, saved.name)
                else:
                    setattr(saved.owner, saved.name, saved.original)
                _Generation.value += 1


def one_at_a_time(function: Callable[..., Any], lock: AbstractContextManager[Any]) -> Callable[..., Any]:
    """`function`, run under `lock`: a check-then-write of moto's made atomic (no two at once)."""

    def serialized(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return function(*args, **kwargs)

    return serialized
