"""Restart safety of `scones up --data-dir`: stopped (SIGTERM) in the middle of a burst and started
again, the stack still has its objects, records, queue messages and metrics, and every upload ends
with exactly one outcome (the reconciler re-drives what the stop cut off)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from monitoring.metrics import read_metrics
from scones.model_store import ModelStore
from service.outcome_watch import wait_for_outcomes
from tests.e2e.scones_up import SconesUp
from training.staging import StagedDataset
from workflow.names import StackNames


def test_a_stop_in_the_middle_of_a_burst_loses_nothing(
    model_store: ModelStore, staged: StagedDataset, tmp_path: Path
) -> None:
    data_dir = tmp_path / "stack"
    images = [path.read_bytes() for path in sorted(staged.split_dir("test").glob("*/*.png"))]
    folder = f"inbox/restart-{uuid.uuid4().hex[:6]}"
    keys = [f"{folder}/{n:02d}.png" for n in range(len(images))]
    unstarted = [f"{folder}/unstarted-{n}.png" for n in range(3)]

    first = SconesUp(model_store.root.parent, "--data-dir", str(data_dir), "--threshold", "0.999")
    try:
        s3 = first.client("s3", max_pool_connections=8)
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: s3.put_object(Bucket="scones-data", Key=keys[n], Body=images[n]),
                    range(len(images)),
                )
            )
        # stopped at once: the last uploads' runs may still be in flight; these have none for sure (a
        # lost event, as EventBridge may drop one), and only the reconciler can start them
        events = first.client("events")
        events.disable_rule(Name=StackNames().rule)
        for key in unstarted:
            s3.put_object(Bucket="scones-data", Key=key, Body=images[0])
        events.enable_rule(Name=StackNames().rule)
    finally:
        output = first.stop()
    assert f"saving its data to {data_dir}" in output
    saved = json.loads((data_dir / "snapshot" / "index.json").read_text())
    keys += unstarted
    assert set(keys) <= {item["key"] for item in saved["objects"]}, "every upload is in the snapshot"
    recorded_before = sum(
        item["key"].startswith(("results/", "review/", "failed/")) for item in saved["objects"]
    )
    assert recorded_before < len(keys), "some uploads had no run at the stop"
    print(f"{recorded_before} of {len(keys)} uploads had their outcome before the stop")

    received_before = saved_sum(saved, "ImagesReceived")
    assert received_before > 0
    second = SconesUp(model_store.root.parent, "--data-dir", str(data_dir))
    try:
        assert any(line.startswith("restored from") for line in second.lines)
        metrics = read_metrics(second.client("cloudwatch"), since=timedelta(hours=1))
        assert metrics["received"] == received_before, "metrics come back exactly"
        s3 = second.client("s3")
        index = outcomes_while_progressing(s3, keys)
        assert set(index.records) == set(keys), (
            f"{len(keys) - len(index.records)} uploads have no outcome; scones up said:\n{second.output}"
        )
        assert not index.duplicates, index.duplicates
        review = second.client("sqs").get_queue_url(QueueName="scones-review")["QueueUrl"]
        waiting = second.client("sqs").get_queue_attributes(
            QueueUrl=review, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        in_review = sum(record["outcome"] == "review" for record in index.records.values())
        assert int(waiting) >= in_review, "review messages from before the stop came back too"
        after = "inbox/after-restart.png"
        s3.put_object(Bucket="scones-data", Key=after, Body=images[0])
        fresh = wait_for_outcomes(s3, "scones-data", [after], timeout_s=60, poll_s=0.2)
        assert after in fresh.records, "a new upload after the restart still starts its run"
    finally:
        second.stop()
    again = json.loads((data_dir / "snapshot" / "index.json").read_text())
    # the restored counts, plus the one upload made after the restart: saving restored metrics adds nothing
    assert saved_sum(again, "ImagesReceived") == received_before + 1


def saved_sum(snapshot: dict[str, Any], name: str) -> float:
    """The sum a snapshot holds for one of the start function's metrics."""
    return float(
        sum(
            point["sum"]
            for metric in snapshot["metrics"]
            if metric["name"] == name and metric["dimensions"] == [{"Name": "service", "Value": "start"}]
            for point in metric["datapoints"]
        )
    )


def outcomes_while_progressing(s3: Any, keys: list[str], stall_s: float = 60, most_s: float = 600) -> Any:
    """Wait for the keys' outcomes for as long as new ones keep coming (a loaded machine is slow, a
    stuck stack makes none): up to `stall_s` without a new one, `most_s` in all."""
    deadline = time.monotonic() + most_s
    seen = -1
    while True:
        index = wait_for_outcomes(s3, "scones-data", keys, timeout_s=stall_s, poll_s=0.2)
        if len(index.records) == len(keys) or len(index.records) == seen or time.monotonic() > deadline:
            return index
        seen = len(index.records)
