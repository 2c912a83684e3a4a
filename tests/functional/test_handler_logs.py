"""Every step's log lines carry the object key and the execution, failures included (powertools Logger)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from handlers import filter as filter_handler
from service.moto_adapters.lambda_runtime import InvocationContext

# a service name of its own: powertools configures one stdlib logger per service name, once per
# process, writing to the stdout of that moment (another test's capture, if it came first)
SERVICE = f"filter-{uuid.uuid4().hex[:8]}"
ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": SERVICE,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "CONFIDENCE_THRESHOLD": "0.85",
}
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:scones-workflow:run-1"


def state(**classification: Any) -> dict[str, Any]:
    return {
        "object": {"bucket": "data", "key": "inbox/a b.png", "etag": "e1"},
        "execution_id": EXECUTION,
        "received_at": "2026-11-24T00:00:00.000Z",
        "classification": classification,
    }


def log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"level"')]


def test_a_step_logs_the_object_and_execution_and_so_does_its_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = filter_handler.build(ENVIRONMENT)
    classification = {
        "label": "bicycle",
        "confidence": 0.9,
        "probabilities": {"bicycle": 0.9, "motorcycle": 0.1},
        "model_version": "v1",
    }
    handler(state(**classification), InvocationContext.direct("scones-filter"))
    with pytest.raises(KeyError):
        handler(
            state(), InvocationContext.direct("scones-filter")
        )  # no classification: a bug upstream, logged before it leaves
    lines = log_lines(capsys.readouterr().out)
    routed = next(line for line in lines if line["message"] == "routed")
    failed = next(line for line in lines if line["message"] == "step failed")
    for line in (routed, failed):
        assert line["object_key"] == "inbox/a b.png" and line["execution_id"] == EXECUTION, line
    assert routed["outcome"] == "accepted" and failed["error_type"] == "KeyError"


def test_concurrent_invocations_of_one_function_log_their_own_request_and_cold_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The local engine runs several environments of a function at once in one process: each line
    carries its own invocation's request id, and each environment has one cold start."""
    from concurrent.futures import ThreadPoolExecutor

    environment = ENVIRONMENT | {"POWERTOOLS_SERVICE_NAME": f"filter-{uuid.uuid4().hex[:8]}"}  # see SERVICE
    environments = [filter_handler.build(environment) for _ in range(3)]
    classification = {
        "label": "bicycle",
        "confidence": 0.9,
        "probabilities": {"bicycle": 0.9, "motorcycle": 0.1},
        "model_version": "v1",
    }

    def invoke(n: int) -> str:
        context = InvocationContext.direct("scones-filter")
        event = state(**classification)
        event["object"]["key"] = f"inbox/{context.aws_request_id}.png"
        environments[n % len(environments)](event, context)
        return context.aws_request_id

    with ThreadPoolExecutor(6) as pool:
        request_ids = set(pool.map(invoke, range(60)))
    routed = [line for line in log_lines(capsys.readouterr().out) if line["message"] == "routed"]
    assert len(routed) == 60 and {line["function_request_id"] for line in routed} == request_ids
    for line in routed:
        assert line["object_key"] == f"inbox/{line['function_request_id']}.png", line
    assert sum(line["cold_start"] for line in routed) == len(environments)
