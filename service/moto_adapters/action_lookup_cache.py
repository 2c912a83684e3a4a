"""(speed) moto's responses find a request's action without listing their class's methods each time.

`BaseResponse.call_action` (moto 5.2.5) calls `method_names_from_class(self.__class__)` on every
request to see whether the action is implemented, and that runs `inspect.getmembers` over the
whole response class: about half a millisecond a request, two percent of the stack's CPU under
load. A class's methods do not change while requests are served, so `install()` keeps one listing
per class, taken afresh after any adapter patches or restores something (one may add an action).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from service.moto_adapters._patching import PatchSet, patch_generation

MOTO_VERSION = "5.2.5"

_patches = PatchSet("action_lookup_cache")


def cached(original: Callable[[object], list[str]]) -> Callable[[object], list[str]]:
    @functools.lru_cache(maxsize=256)
    def listing(clazz: type, generation: int) -> list[str]:  # a generation: no adapter patched since
        return original(clazz)

    def method_names_from_class(clazz: object) -> list[str]:
        if not isinstance(clazz, type):
            return original(clazz)
        return listing(clazz, patch_generation())

    return method_names_from_class


def install() -> None:
    from moto.core import responses

    uninstall()
    original = getattr(responses, "method_names_from_class")  # noqa: B009 - not re-exported
    _patches.replace(responses, "method_names_from_class", cached(original))


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
