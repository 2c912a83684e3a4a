"""The two speed adapters keep Step Functions' behaviour: same results, parse and clients reused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.moto_adapters import asl_parse_cache, task_clients
from service.moto_adapters.server import LocalMotoServer, start_moto_server

DEFINITION = {
    "StartAt": "Shape",
    "States": {
        "Shape": {
            "Type": "Pass",
            "Parameters": {"value.$": "$.value", "doubled.$": "States.MathAdd($.value, $.value)"},
            "Next": "Send",
        },
        "Send": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": "${QueueUrl}", "MessageBody.$": "$"},
            "ResultPath": None,
            "End": True,
        },
    },
}


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalMotoServer]:
    with start_moto_server() as server:
        yield server


def run(aws: LocalMotoServer, arn: str, value: int) -> dict[str, Any]:
    sfn = aws.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=arn, name=f"run-{value}", input=json.dumps({"value": value})
    )["executionArn"]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.02)
    return dict(described)


def test_executions_share_one_parse_and_one_client_and_still_succeed(aws: LocalMotoServer) -> None:
    assert asl_parse_cache.is_installed() and task_clients.is_installed()
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="speed-adapters")["QueueUrl"]
    definition = json.dumps(DEFINITION).replace("${QueueUrl}", queue)
    before = asl_parse_cache.cached_definitions()
    arn = aws.client("stepfunctions").create_state_machine(
        name="speed-adapters", definition=definition, roleArn="arn:aws:iam::123456789012:role/states"
    )["stateMachineArn"]
    results = [run(aws, arn, value) for value in (1, 2, 3)]
    assert [r["status"] for r in results] == ["SUCCEEDED"] * 3
    assert [json.loads(r["output"]) for r in results] == [{"value": v, "doubled": 2 * v} for v in (1, 2, 3)]
    assert asl_parse_cache.cached_definitions() == before + 1, "validation and three executions, one parse"
    assert task_clients.cached_clients() >= 1
    bodies = sorted(
        json.loads(m["Body"])["value"]
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    )
    assert bodies == [1, 2, 3]
