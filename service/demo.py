"""`scones demo`: the one-shot main job on the embedded local default.

Stages the data and trains if no model is published yet, starts the local SageMaker-compatible
endpoint, classifies every `test/` image through boto3's `sagemaker-runtime` client, routes each by
the confidence threshold, and prints a summary (also written as JSON with `--summary`).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from botocore.config import Config

from scones.datasets import read_labeled_folder
from scones.evaluation import DEFAULT_THRESHOLD, summarize
from scones.model_store import ModelStore, NoModelError, default_home
from service.endpoint import LocalEndpoint


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


def run_demo(
    *, dataset: str | None = None, threshold: float = DEFAULT_THRESHOLD, summary_path: Path | None = None
) -> dict[str, Any]:
    from training.staging import stage

    store = ModelStore.default()
    staged = stage(dataset, default_home() / "data", cache_dir=default_home() / "cache")
    try:
        version = store.current_version()
        print(f"serving the published model {version}")
    except NoModelError:
        from service.training_run import train_and_publish

        print("no model published yet: training one (about four minutes on two cores)")
        version = train_and_publish(dataset=dataset, store=store).version

    images = read_labeled_folder(staged.split_dir("test"))
    outcomes = {"accepted": 0, "review": 0, "failed": 0}
    probabilities: list[list[float]] = []
    labels: list[int] = []
    latencies: list[float] = []
    with LocalEndpoint(store=store, threads=2) as endpoint:
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )
        for image in images:
            started = time.perf_counter()
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=endpoint.name, ContentType="image/png", Body=image.data
                )
                result = json.loads(response["Body"].read())
            except Exception:
                outcomes["failed"] += 1
                continue
            finally:
                latencies.append((time.perf_counter() - started) * 1000)
            probabilities.append(result)
            labels.append(image.label)
            outcomes["accepted" if max(result) >= threshold else "review"] += 1

    quality = summarize(np.asarray(probabilities), np.asarray(labels), threshold)
    summary: dict[str, Any] = {
        "model_version": version,
        "uploaded": len(images),
        "outcomes": outcomes,
        "missing": len(images) - sum(outcomes.values()),
        "duplicated": 0,
        "accuracy": quality["accuracy"],
        "accepted_accuracy": quality["accepted_accuracy"],
        "coverage": quality["coverage"],
        "ece": quality["ece"],
        "threshold": threshold,
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(percentile(latencies, 95), 2),
        },
    }
    print(
        f"\n{summary['uploaded']} images: {outcomes['accepted']} accepted, {outcomes['review']} to review, "
        f"{outcomes['failed']} failed, {summary['missing']} missing"
    )
    print(
        f"accuracy {quality['accuracy']:.4f}; at threshold {threshold}: coverage {quality['coverage']:.4f}, "
        f"accuracy among accepted {quality['accepted_accuracy']}; ECE {quality['ece']:.4f}"
    )
    print(f"latency per image p50 {summary['latency_ms']['p50']} ms, p95 {summary['latency_ms']['p95']} ms")
    if latencies:
        print(f"mean {statistics.fmean(latencies):.2f} ms over {len(latencies)} requests")
    if summary_path is not None:
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
