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
    # CloudWatch keeps timestamps to the second: the window starts on the whole second before this
    # test's first upload, and two seconds of quiet keep earlier tests' metrics out of that second
    time.sleep(2.0)
    started = datetime.now(UTC).replace(microsecond=0)
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
    since = datetime.now(UTC) - started
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
