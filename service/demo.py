"""`scones demo`: the one-shot main job on the embedded local default.

Starts the local stack, stages the data and trains if no model is published yet, drops every
`test/` image into the inbox, waits for every outcome, and prints a summary (counts per outcome,
accuracy against the known labels, upload → outcome latency), also written as JSON with `--summary`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.report import write_report
from scones.datasets import read_labeled_folder
from scones.evaluation import DEFAULT_THRESHOLD
from scones.labels import LABELS
from scones.model_store import ModelStore, NoModelError, default_home
from scones.steps import parse_iso
from service.local_stack import DataDirInUse, DataDirLock, LocalStack
from service.outcome_watch import wait_for_outcomes


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else 0.0


def metrics_matching(
    stack: LocalStack, counted: dict[str, int], window_start: datetime, wait_s: float = 30.0
) -> dict[str, Any]:
    """The demo's CloudWatch counts, once they have caught up with the outcome records (or after `wait_s`).

    The window starts on the whole second the demo began (CloudWatch keeps whole seconds), so metrics
    restored from an earlier run, however recent, stay out.
    """
    from monitoring.metrics import read_metrics

    deadline = time.monotonic() + wait_s
    while True:
        now = datetime.now(UTC)
        metrics = read_metrics(stack.client("cloudwatch"), since=now - window_start, now=now)
        counts = {key: metrics[key] for key in ("received", "accepted", "review", "failed")}
        if all(counts[o] == n for o, n in counted.items()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def ensure_model(store: ModelStore, dataset: str | None) -> str:
    try:
        version = store.current_version()
        print(f"serving the published model {version}")
    except NoModelError:
        from service.training_run import train_and_publish

        print("no model published yet: staging the data and training one (a few minutes on two cores)")
        version = train_and_publish(dataset=dataset, store=store).version
    return version


def say_temporary(in_use: DataDirInUse) -> None:
    print(
        f"{in_use.folder} is held by a running local stack ({in_use.holder}): the demo runs on a temporary"
        " stack beside it (its uploads are not kept)"
    )


def kept_stack_folder() -> Path | None:
    """The stack folder `scones up` keeps (so it shows the demo's data later), or None (a temporary
    stack) while a running `scones up` holds it: checked first, before any staging or training."""
    data_dir = default_home() / "stack"
    try:
        DataDirLock(data_dir).release()
    except DataDirInUse as in_use:
        say_temporary(in_use)
        return None
    return data_dir


@contextmanager
def demo_stack(store: ModelStore, threshold: float, data_dir: Path | None) -> Iterator[LocalStack]:
    """The local stack on `data_dir`, or a temporary one if a `scones up` took the folder since the
    check (staging and training take minutes)."""
    with ExitStack() as running:
        try:
            stack = running.enter_context(LocalStack(store=store, threshold=threshold, data_dir=data_dir))
        except DataDirInUse as in_use:
            say_temporary(in_use)
            stack = running.enter_context(LocalStack(store=store, threshold=threshold))
        yield stack


def run_demo(
    *,
    dataset: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    summary_path: Path | None = None,
    timeout_s: float = 600.0,
    concurrency: int = 8,
) -> dict[str, Any]:
    from training.staging import stage_or_reuse

    data_dir = kept_stack_folder()
    store = ModelStore.default()
    version = ensure_model(store, dataset)
    staged = stage_or_reuse(dataset, default_home() / "data", cache_dir=default_home() / "cache")
    images = read_labeled_folder(staged.split_dir("test"))
    run = uuid.uuid4().hex[:8]
    labels = {
        f"inbox/demo-{run}/{i:03d}-{image.relative_path.split('/')[-1]}": image
        for i, image in enumerate(images)
    }

    with demo_stack(store, threshold, data_dir) as stack:
        data_dir = stack.data_dir  # None: a temporary stack
        s3 = stack.client("s3", max_pool_connections=concurrency)
        bucket = stack.resources.bucket
        print(f"local stack up: S3 at {stack.aws_endpoint_url}, bucket {bucket}")
        uploaded_at: dict[str, float] = {}

        def upload(key: str) -> None:
            uploaded_at[key] = time.time()
            s3.put_object(Bucket=bucket, Key=key, Body=labels[key].data, ContentType="image/png")

        # runs the start re-drove (uploads an interrupted session left without an outcome) end first:
        # their counts must not land in the demo's window
        stack.wait_quiet(300)
        time.sleep(1.0)  # CloudWatch keeps whole seconds: the window starts after theirs
        window_start = datetime.now(UTC).replace(microsecond=0)
        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(upload, labels))
        print(f"uploaded {len(labels)} images to s3://{bucket}/inbox/demo-{run}/; waiting for their outcomes")
        index = wait_for_outcomes(s3, bucket, labels, timeout_s=timeout_s)
        wall = time.monotonic() - started
        outcomes = {
            o: sum(r["outcome"] == o for r in index.records.values())
            for o in ("accepted", "review", "failed")
        }
        stack.wait_quiet(60)  # each function publishes its counts as its invocation ends
        metrics = metrics_matching(stack, outcomes | {"received": len(labels)}, window_start)
        # a temporary stack's report apart: the kept demo's report stays what `scones up` shows
        report_dir = default_home() / ("report" if data_dir is not None else f"report-{run}")
        write_report(s3, bucket, report_dir, last=len(labels))

    latencies, correct, classified = [], 0, 0
    for key, record in index.records.items():
        recorded = parse_iso(record["recorded_at"]).timestamp()
        latencies.append((recorded - uploaded_at[key]) * 1000)
        if record["outcome"] != "failed":
            classified += 1
            correct += int(record["label"] == LABELS[labels[key].label])
    accepted = [r for r in index.records.values() if r["outcome"] == "accepted"]
    accepted_correct = sum(
        int(r["label"] == LABELS[labels[key].label])
        for key, r in index.records.items()
        if r["outcome"] == "accepted"
    )
    summary: dict[str, Any] = {
        "model_version": version,
        "uploaded": len(labels),
        "outcomes": outcomes,
        "missing": len(labels) - len(index.records),
        "duplicated": len(index.duplicates),
        "accuracy": round(correct / classified, 4) if classified else None,
        "accepted_accuracy": round(accepted_correct / len(accepted), 4) if accepted else None,
        "coverage": round(len(accepted) / len(labels), 4),
        "threshold": threshold,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "wall_seconds": round(wall, 1),
        "images_per_s": round(len(index.records) / wall, 1) if wall else None,
        "metrics": metrics,
        "metrics_match_outcomes": all(metrics[o] == outcomes[o] for o in outcomes)
        and metrics["received"] == len(labels),
        "report": str(report_dir / "index.html"),
        "data_dir": None if data_dir is None else str(data_dir),
    }
    print(
        f"\n{summary['uploaded']} uploaded: {outcomes['accepted']} accepted, "
        f"{outcomes['review']} sent to review, {outcomes['failed']} failed; "
        f"{summary['missing']} missing, {summary['duplicated']} duplicated"
    )
    print(
        f"accuracy {summary['accuracy']} against the known labels; accuracy among accepted "
        f"{summary['accepted_accuracy']} at threshold {threshold} (coverage {summary['coverage']})"
    )
    print(
        f"upload → outcome latency p50 {summary['latency_ms']['p50']} ms, "
        f"p95 {summary['latency_ms']['p95']} ms; "
        f"{summary['images_per_s']} images/s over {summary['wall_seconds']} s"
    )
    print(
        f"CloudWatch metrics: {metrics['received']} received, {metrics['accepted']} accepted, "
        f"{metrics['review']} review, {metrics['failed']} failed "
        f"({'equal to' if summary['metrics_match_outcomes'] else 'DIFFERENT FROM'} the outcome records)"
    )
    kept = (
        f"the demo's data stays in {data_dir} (see it again with `scones up`)"
        if data_dir is not None
        else "the demo's data was not kept (a temporary stack)"
    )
    print(f"report: {summary['report']}; {kept}")
    if summary_path is not None:
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"summary written to {summary_path}")
    return summary
