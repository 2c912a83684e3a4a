"""Step Functions StartExecution: one name starts one execution, even when two calls race.

moto 5.2.5's `StepFunctionsParserBackend.start_execution` looks for an execution of that name,
copies the state machine, then adds the new execution, with no lock: two concurrent calls with one
name (a duplicate event delivery, the reconciler and a replay) can both start, where AWS answers the
second with ExecutionAlreadyExists. The workflow's exactly-one-run rests on that answer (runs are
named after the object version). `install()` runs StartExecution calls one at a time.
"""

from __future__ import annotations

import threading

from service.moto_adapters._patching import PatchSet, one_at_a_time

MOTO_VERSION = "5.2.5"

_patches = PatchSet("sfn_execution_names")
_starts = threading.Lock()


def install() -> None:
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    uninstall()
    start_execution = StepFunctionsParserBackend.start_execution
    _patches.replace(StepFunctionsParserBackend, "start_execution", one_at_a_time(start_execution, _starts))


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
