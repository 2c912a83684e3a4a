"""`scones up` as a user runs it, driven by the real AWS CLI over `--endpoint-url`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from scones.model_store import ModelStore
from service.outcome_watch import wait_for_outcomes
from tests.e2e.scones_up import BIN, SconesUp
from training.staging import StagedDataset


@pytest.fixture(scope="module")
def scones_up(model_store: ModelStore) -> Iterator[str]:
    """`scones up --port 0` in its own process (keeping nothing); yields the AWS endpoint URL it prints.

    Started as a script's `scones up &` starts it (SIGINT ignored), and stopped by SIGINT: it stops."""
    running = SconesUp(model_store.root.parent, "--ephemeral", sigint_ignored=True)
    try:
        yield running.url
    finally:
        running.stop(stop_signal=signal.SIGINT)


def test_aws_cli_upload_produces_an_outcome(scones_up: str, staged: StagedDataset, tmp_path: Path) -> None:
    aws = shutil.which("aws", path=str(BIN)) or shutil.which("aws")
    assert aws, "the AWS CLI (awscli) is a dev dependency"
    image = tmp_path / "from cli.png"
    image.write_bytes(next((staged.split_dir("test") / "bicycle").iterdir()).read_bytes())
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    copied = subprocess.run(
        [aws, "--endpoint-url", scones_up, "s3", "cp", str(image), "s3://scones-data/inbox/from cli.png"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr
    s3 = boto3.client(
        "s3",
        endpoint_url=scones_up,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    index = wait_for_outcomes(s3, "scones-data", ["inbox/from cli.png"], timeout_s=60, poll_s=0.1)
    record = index.records["inbox/from cli.png"]
    assert record["outcome"] in ("accepted", "review")
    listed = subprocess.run(
        [aws, "--endpoint-url", scones_up, "s3", "ls", "--recursive", "s3://scones-data/"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    folder = {"accepted": "results", "review": "review"}[record["outcome"]]
    assert f"{folder}/from cli.png/{record['etag']}.json" in listed.stdout
    # the review queue, as `scones up` prints the command (the CLI's sqs needs --endpoint-url)
    queue = f"{scones_up}/123456789012/scones-review"
    received = subprocess.run(
        [
            aws,
            "--endpoint-url",
            scones_up,
            "sqs",
            "get-queue-attributes",
            "--queue-url",
            queue,
            "--attribute-names",
            "All",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert received.returncode == 0 and "QueueArn" in received.stdout, received.stderr
