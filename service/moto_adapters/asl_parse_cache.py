"""(speed) Step Functions parses a state machine's definition once, not once per execution as moto 5.2.5 does.

moto's `ExecutionWorker` calls `AmazonStateLanguageParser.parse(definition)` at the start of every
execution: ANTLR lexes and parses the whole ASL document (tens of milliseconds of Python per run),
then a `Preprocessor` turns the parse tree into evaluation components. `install()` caches the parse
tree per definition text and runs only the preprocessing per execution, so every execution still
gets its own fresh components (they carry per-run state); the tree is only read by the visitor.
Definitions with syntax errors are not cached: the original raises as before.
"""

from __future__ import annotations

import functools
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("asl_parse_cache")
_caches: list[Any] = []  # the installed tree cache, for `cached_definitions`


def install(maxsize: int = 64) -> None:
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    uninstall()
    original = asl_parser.AmazonStateLanguageParser.parse

    @functools.lru_cache(maxsize=maxsize)
    def tree_of(definition: str) -> Any:
        return original(definition)[1]

    def parse(definition: str) -> tuple[Any, Any]:
        tree = tree_of(definition)
        return Preprocessor().visit(tree), tree

    _caches.append(tree_of)
    _patches.replace(asl_parser.AmazonStateLanguageParser, "parse", staticmethod(parse))


def uninstall() -> None:
    _patches.restore()
    _caches.clear()


def is_installed() -> bool:
    return _patches.active


def cached_definitions() -> int:
    return sum(int(cache.cache_info().currsize) for cache in _caches)
