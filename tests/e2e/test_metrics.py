"""`scones metrics` reads back what the functions emitted: counts equal to the outcomes, with percentiles."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from monitoring.metrics import format_table, read_metrics
from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes
from service.sample_uploads import INVALID
from training.staging import StagedDataset


def test_metrics_count_what_the_outcomes_say(stack: LocalStack, staged: StagedDataset) -> None:
    time.sleep(1.0)  # nothing of earlier tests lands in this window
    started = datetime.now(UTC)
    folder = f"inbox/metrics-{uuid.uuid4().hex[:8]}"
    uploads = {
        f"{folder}/{path.name}": path.read_bytes()
        for path in sorted((staged.split_dir("test") / "bicycle").iterdir())[:6]
    }
    uploads[f"{folder}/notes.jpg"] = INVALID["notes.jpg"][0]()
    s3 = stack.client("s3")
    for key, data in uploads.items():
        s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=data)
    index = wait_for_outcomes(s3, stack.resources.bucket, uploads, timeout_s=60, poll_s=0.1)
    outcomes = [record["outcome"] for record in index.records.values()]
    since = datetime.now(UTC) - started  # no margin: the second before `started` holds earlier tests' metrics
    metrics = read_metrics(stack.client("cloudwatch"), since=since)
    assert metrics["received"] == len(uploads)
    assert (metrics["accepted"], metrics["review"], metrics["failed"]) == (
        outcomes.count("accepted"),
        outcomes.count("review"),
        outcomes.count("failed"),
    )
    assert metrics["failed_by_reason"] == {"not_an_image": 1}
    assert all(value is not None for value in metrics["confidence"].values())
    assert metrics["confidence"]["p10"] <= metrics["confidence"]["p50"] <= metrics["confidence"]["p90"]
    ((version, latency),) = metrics["inference_latency_ms"].items()
    assert latency["count"] == 6 and 0 < latency["p50"] <= latency["p99"]
    assert sum(row["accepted"] + row["review"] for row in metrics["by_class"]) == 6, metrics
    table = format_table(metrics)
    assert f"model {version}" in table and "images received" in table
