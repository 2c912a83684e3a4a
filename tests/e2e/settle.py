"""Waiting until the shared local stack is quiet: no event delivery pending and no run in flight."""

from __future__ import annotations

import time

import service.moto_adapters as adapters
from service.local_stack import LocalStack


def settle(stack: LocalStack, timeout_s: float = 30.0) -> None:
    """Return once every event is delivered and no run of the workflow is RUNNING (what earlier tests
    started included), so what a test counts next is its own; a run still going at the timeout is
    left to the test's own checks."""
    installed = adapters.current()
    assert installed is not None and installed.delivery.wait_idle(timeout_s)
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while True:
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=stack.resources.state_machine_arn, statusFilter="RUNNING"
        )
        if not any(page["executions"] for page in pages) or time.monotonic() > deadline:
            return
        time.sleep(0.1)
