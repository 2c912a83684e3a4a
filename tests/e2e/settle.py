"""Waiting until the shared local stack is quiet: no event delivery pending and no run in flight."""

from __future__ import annotations

from service.local_stack import LocalStack


def settle(stack: LocalStack, timeout_s: float = 30.0) -> None:
    """Return once every event is delivered and no run of the workflow is RUNNING (what earlier tests
    started included), so what a test counts next is its own; a run still going at the timeout is
    left to the test's own checks."""
    stack.wait_quiet(timeout_s)
