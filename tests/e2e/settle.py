"""What follows an outcome record, for the e2e tests: its run's end (the DLQ letter, the idempotency
record, the metrics and the run's status come after the record), a quiet stack between tests, and
every letter on the DLQ."""

from __future__ import annotations

import json
import time
from typing import Any

from service.local_stack import LocalStack


def run_ended(stack: LocalStack, execution_arn: str, timeout_s: float = 120) -> str:
    """The run's final status, once it is no longer RUNNING."""
    sfn = stack.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while True:
        status: str = sfn.describe_execution(executionArn=execution_arn)["status"]
        if status != "RUNNING":
            return status
        assert time.monotonic() < deadline, f"{execution_arn} still RUNNING after {timeout_s} s"
        time.sleep(0.05)


def quiet(stack: LocalStack, timeout_s: float = 120) -> None:
    """Every event delivered and no run going: what is counted next is the caller's own."""
    assert stack.wait_quiet(timeout_s), f"runs or deliveries still going after {timeout_s} s"


def dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    """Every message on the DLQ, peeked: each is put back (visible at once) after it was read."""
    sqs = stack.client("sqs")
    url = stack.resources.dead_letter_queue_url
    bodies: dict[str, dict[str, Any]] = {}
    handles = []
    while received := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
        "Messages", []
    ):
        bodies |= {m["MessageId"]: json.loads(m["Body"]) for m in received}
        handles += [m["ReceiptHandle"] for m in received]
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(bodies.values())
