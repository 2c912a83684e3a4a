"""Step Functions' cheap JSONPath evaluation: moto re-parses every path on every state transition; cache it.

moto's ASL interpreter calls `jsonpath_ng.ext.parse` (through `json_path.extract_json`) and
`jsonpath_ng.parse` (in `ResultPath`) for every InputPath/OutputPath/ResultPath/`.$` field of every
state it enters, and a jsonpath_ng parse costs milliseconds (it runs a PLY parser). The paths come
from a handful of state machine definitions, so a bounded `functools.lru_cache` on both names makes
them effectively free. The parsed expressions are immutable ASTs (`find` does not change them), so
sharing one across executions and threads is safe.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("jsonpath_cache")
_cached: dict[str, Any] = {}


def _modules() -> dict[str, Any]:
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    return {"json_path": json_path, "result_path": result_path}


def install(maxsize: int = 1024) -> None:
    """Replace both modules' `parse` with an LRU-cached version (re-installing replaces the caches)."""
    uninstall()
    for label, module in _modules().items():
        original: Callable[..., Any] = module.parse
        cached = functools.lru_cache(maxsize=maxsize)(original)
        _patches.replace(module, "parse", cached)
        _cached[label] = cached


def uninstall() -> None:
    _patches.restore()
    _cached.clear()


def is_installed() -> bool:
    return _patches.active


def cache_info() -> dict[str, functools._CacheInfo]:
    """Hits and misses of each cached `parse` ("json_path", "result_path"); empty when not installed."""
    return {label: cached.cache_info() for label, cached in _cached.items()}
