"""(speed) Step Functions parses and preprocesses a definition once, not per execution as moto 5.2.5 does.

moto's `ExecutionWorker` calls `AmazonStateLanguageParser.parse(definition)` at the start of every
execution: ANTLR lexes and parses the whole ASL document, then a `Preprocessor` turns the parse tree
into evaluation components (tens of milliseconds of Python per run, most of it `getText()` calls).
The components hold no per-execution state: what they keep between steps (retry attempt numbers,
backoff multipliers) lives in the execution's own `Environment.heap`, keyed by each component's
`heap_key`. So `install()` caches the whole `(program, tree)` per definition text and shares it
between executions. `heap_key` is assigned lazily in moto; the cache assigns every key before
the program is shared, so two threads can never give one component two keys. Definitions with
syntax errors are not cached: the original raises as before.
"""

from __future__ import annotations

import functools
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("asl_parse_cache")
_caches: list[Any] = []  # the installed cache, for `cached_definitions`


def assign_heap_keys(component: Any, seen: set[int] | None = None) -> int:
    """Give every evaluation component reachable from `component` its heap key now; return how many."""
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    seen = set() if seen is None else seen
    if id(component) in seen:
        return 0
    seen.add(id(component))
    count = 0
    if isinstance(component, EvalComponent):
        _ = component.heap_key
        count = 1
    children: list[Any] = []
    if isinstance(component, dict):
        children = list(component.values())
    elif isinstance(component, list | tuple | set | frozenset):
        children = list(component)
    elif hasattr(component, "__dict__") and type(component).__module__.startswith("moto.stepfunctions"):
        children = list(vars(component).values())
    for child in children:
        count += assign_heap_keys(child, seen)
    return count


def install(maxsize: int = 64) -> None:
    from moto.stepfunctions.parser.asl.parse import asl_parser

    uninstall()
    original = asl_parser.AmazonStateLanguageParser.parse

    @functools.lru_cache(maxsize=maxsize)
    def parse(definition: str) -> tuple[Any, Any]:
        program, tree = original(definition)
        assign_heap_keys(program)
        return program, tree

    _caches.append(parse)
    _patches.replace(asl_parser.AmazonStateLanguageParser, "parse", staticmethod(parse))


def uninstall() -> None:
    _patches.restore()
    _caches.clear()


def is_installed() -> bool:
    return _patches.active


def cached_definitions() -> int:
    return sum(int(cache.cache_info().currsize) for cache in _caches)
