"""(speed) Step Functions copies state data with a JSON-aware copy instead of `copy.deepcopy`.

moto's ASL interpreter (5.2.5) deep-copies a state's input, its result, every path's value and every
`.$` parameter as it goes: thousands of `copy.deepcopy` calls per execution, each paying for the
generic memo machinery on every dict, list and string. State data is JSON (dicts, lists, strings,
numbers, booleans, null), and a copy that knows only those types does the same work several times
faster. `install()` gives the interpreter modules that call `copy.deepcopy` a `copy` whose
`deepcopy` takes that path for pure JSON values and hands anything else (the interpreter's own
objects, datetimes, dict subclasses) to `copy.deepcopy` whole, so those keep its semantics.
"""

from __future__ import annotations

import copy
import importlib
import types
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("sfn_state_copies")
# The interpreter modules on an execution's path that call `copy.deepcopy` (moto 5.2.5).
_CALLERS = (
    "moto.stepfunctions.parser.asl.eval.states",
    "moto.stepfunctions.parser.asl.eval.environment",
    "moto.stepfunctions.parser.asl.component.state.exec.execute_state",
    "moto.stepfunctions.parser.asl.component.common.string.string_expression",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service",
)
_ATOMS = (str, int, float, bool, type(None))


class _NotJson(Exception):
    """The value holds something other than JSON types: copy.deepcopy takes the whole of it."""


def _json_copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _json_copy(item) for key, item in value.items()}
    if kind is list:
        return [_json_copy(item) for item in value]
    if kind in _ATOMS:
        return value  # immutable
    raise _NotJson


def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """`copy.deepcopy(value)`, faster for pure JSON values."""
    try:
        return _json_copy(value)
    except _NotJson:
        return copy.deepcopy(value, memo)


json_aware_copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)


def install() -> None:
    uninstall()
    for module_name in _CALLERS:
        module = importlib.import_module(module_name)
        if getattr(module, "copy", None) is not copy:
            raise AttributeError(
                f"adapter sfn_state_copies: {module_name} no longer imports the copy module "
                "(was moto upgraded past the version the adapter was written against?)"
            )
        _patches.replace(module, "copy", json_aware_copy)


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
