"""The runnable examples beside the sample events (`examples/`) run as their docstrings say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scones.objects import execution_arn
from service.local_stack import LocalStack

ROOT = Path(__file__).parents[2]
EVENTS = sorted((ROOT / "tests" / "events").glob("s3_*.json"))  # the start function's events


def run_example(*arguments: str, environment: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "examples/invoke_start.py", *arguments],
        cwd=ROOT,
        env=os.environ | (environment or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("event", EVENTS, ids=[path.stem for path in EVENTS])
def test_the_start_example_parses_every_sample_event(event: Path) -> None:
    output = run_example(str(event.relative_to(ROOT)))
    key = json.loads(event.read_text())["detail"]["object"]["key"]
    if key.startswith("inbox/"):
        assert json.loads(output)["object"]["key"] == key
    else:
        assert output.startswith("starts nothing:") and "outside inbox/" in output


def test_the_start_example_invokes_the_stack_function(stack: LocalStack) -> None:
    event = ROOT / "tests" / "events" / "s3_object_created_aws_docs_sample.json"
    environment = {
        "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    answer = json.loads(run_example("--invoke", str(event.relative_to(ROOT)), environment=environment))
    assert answer["started"] is True and answer["execution_name"].startswith("example-key-")
    arn = execution_arn(stack.resources.state_machine_arn, answer["execution_name"])
    execution = stack.client("stepfunctions").describe_execution(executionArn=arn)
    assert json.loads(execution["input"])["object"]["key"] == "inbox/example-key"
