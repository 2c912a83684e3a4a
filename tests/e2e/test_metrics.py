"""`scones metrics` reads back what the functions emitted: counts equal to the outcomes, with percentiles."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitoring.metrics import format_table, read_metrics
from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes
from service.sample_uploads import INVALID
from tests.e2e.settle import quiet
from training.staging import StagedDataset
from workflow.names import METRICS_NAMESPACE


def test_metrics_count_what_the_outcomes_say(stack: LocalStack, staged: StagedDataset) -> None:
    # CloudWatch keeps timestamps to the second: the window starts on the whole second before this
    # test's first upload, after earlier tests' runs have ended and that second has passed
    quiet(stack)
    time.sleep(1.0)
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
    quiet(stack)  # a function publishes its metrics as its invocation ends, maybe after the outcome
    outcomes = [record["outcome"] for record in index.records.values()]
    expected = (
        len(uploads),
        outcomes.count("accepted"),
        outcomes.count("review"),
        outcomes.count("failed"),
    )
    # CloudWatch is eventually consistent, and so is the local stack: read again for a while until
    # every count is in (failed once in a clean-clone run with 4 of 7 received)
    deadline = time.monotonic() + 30
    while True:
        metrics = read_metrics(stack.client("cloudwatch"), since=datetime.now(UTC) - started)
        counts = (metrics["received"], metrics["accepted"], metrics["review"], metrics["failed"])
        if counts == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counts == expected, metrics
    assert metrics["failed_by_reason"] == {"not_an_image": 1}
    assert all(value is not None for value in metrics["confidence"].values())
    assert metrics["confidence"]["p10"] <= metrics["confidence"]["p50"] <= metrics["confidence"]["p90"]
    ((version, latency),) = metrics["inference_latency_ms"].items()
    assert latency["count"] == 6 and 0 < latency["p50"] <= latency["p99"]
    assert sum(row["accepted"] + row["review"] for row in metrics["by_class"]) == 6, metrics
    table = format_table(metrics)
    assert f"model {version}" in table and "images received" in table


def _value(template: dict[str, Any], value: Any) -> str:
    """A dimension value; a `Ref` to a parameter is its default, as a deployment without it has."""
    if isinstance(value, dict) and "Ref" in value:
        return str(template["Parameters"][value["Ref"]]["Default"])
    return str(value)


def _our_series(template: dict[str, Any]) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """(metric, dimensions) of every alarm and dashboard line on the functions' own metrics."""
    series = set()
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            stats = [q["MetricStat"]["Metric"] for q in properties.get("Metrics", []) if "MetricStat" in q]
            for metric in [properties, *stats]:
                if metric.get("Namespace") == METRICS_NAMESPACE:
                    dims = frozenset(
                        (d["Name"], _value(template, d["Value"])) for d in metric.get("Dimensions", [])
                    )
                    series.add((metric["MetricName"], dims))
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[A-Za-z.:]+\}", "0", body))["widgets"]
    for widget in widgets:
        for line in widget["properties"].get("metrics", []):
            if line[0] == METRICS_NAMESPACE:
                pairs = [item for item in line[2:] if isinstance(item, str)]
                series.add((line[1], frozenset(zip(pairs[::2], pairs[1::2], strict=True))))
    return series


def test_every_alarm_and_dashboard_line_watches_a_series_the_functions_publish(
    stack: LocalStack, staged: StagedDataset
) -> None:
    """CloudWatch matches an alarm's dimensions exactly: a dimension the code never sets (a model
    version the template cannot know) leaves the alarm without data, OK forever."""
    from service.sam_template import load_template

    folder = f"inbox/alarms-{uuid.uuid4().hex[:8]}"
    image = next((staged.split_dir("test") / "bicycle").iterdir()).read_bytes()
    s3, lam = stack.client("s3"), stack.client("lambda")
    variables = lam.get_function_configuration(FunctionName="scones-filter")["Environment"]["Variables"]
    # one upload of each outcome, whatever the model says: every watched count is published
    phases = {
        "0.0": ("accepted.png", image),
        "1.0": ("review.png", image),
        "0.85": ("notes.jpg", INVALID["notes.jpg"][0]()),
    }
    outcomes = []
    stack.endpoint.faults.set("error", count=1)  # the first call fails (retried): EndpointErrors
    try:
        for threshold, (name, data) in phases.items():
            lam.update_function_configuration(
                FunctionName="scones-filter",
                Environment={"Variables": variables | {"CONFIDENCE_THRESHOLD": threshold}},
            )
            key = f"{folder}/{name}"
            s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=data)
            index = wait_for_outcomes(s3, stack.resources.bucket, [key], timeout_s=60, poll_s=0.1)
            outcomes.append(index.records[key]["outcome"])
    finally:
        lam.update_function_configuration(FunctionName="scones-filter", Environment={"Variables": variables})
    assert outcomes == ["accepted", "review", "failed"]
    scheduled = (
        Path(__file__).parents[1] / "events" / "eventbridge_scheduled_event_aws_docs_sample.json"
    ).read_bytes()
    answer = lam.invoke(
        FunctionName="scones-reconcile", Payload=scheduled
    )  # its hourly run, publishing its counts
    assert "FunctionError" not in answer
    quiet(stack)  # the record function publishes its counts as its invocation ends
    published = {
        (metric["MetricName"], frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
        for page in stack.client("cloudwatch")
        .get_paginator("list_metrics")
        .paginate(Namespace=METRICS_NAMESPACE)
        for metric in page["Metrics"]
    }
    watched = _our_series(load_template())
    assert {"InferenceLatency", "ImagesFailed", "ImagesReceived", "ImagesSentToReview"} <= {
        m for m, _ in watched
    }
    names = {name for name, _ in published}
    assert {"InferenceLatency", "ImagesFailed", "ImagesReceived", "ImagesSentToReview"} <= names
    missing = {series for series in watched if series not in published}
    assert not missing, f"watched but never published with these dimensions: {missing}"
