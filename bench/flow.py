"""Benchmark: upload → outcome through the whole local chain, and what the orchestration costs.

For bursts of 1, 50 and 500 images (real `test/` images, cycled) it uploads into the inbox of a
fresh local stack and measures each image's upload → outcome-record latency (p50/p95) and the
sustained throughput (outcomes per second over the burst). It then runs the same steps by calling
the five handlers directly in one process (same S3, same endpoint, no EventBridge/Step Functions)
and reports the ratio. Run alone on an idle machine: `python bench/flow.py [--sizes 1,50,500] [--json]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from staged_data import test_images

from scones.model_store import ModelStore
from scones.steps import parse_iso
from service.local_stack import LocalStack
from service.moto_adapters.lambda_runtime import InvocationContext
from service.outcome_watch import wait_for_outcomes
from service.provision import function_environment
from workflow.names import FUNCTIONS


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 1),
        "p95": round(float(np.percentile(array, 95)), 1),
    }


def burst(stack: LocalStack, images: list[bytes], size: int, concurrency: int = 8) -> dict[str, Any]:
    s3 = stack.client("s3", max_pool_connections=concurrency)
    bucket = stack.resources.bucket
    run = uuid.uuid4().hex[:8]
    keys = [f"inbox/bench-{run}/{i:04d}.png" for i in range(size)]
    uploaded_at: dict[str, float] = {}

    def upload(index: int) -> None:
        uploaded_at[keys[index]] = time.time()
        s3.put_object(Bucket=bucket, Key=keys[index], Body=images[index % len(images)])

    started = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(upload, range(size)))
    index = wait_for_outcomes(s3, bucket, keys, timeout_s=900, poll_s=0.05)
    recorded_at = {key: parse_iso(record["recorded_at"]).timestamp() for key, record in index.records.items()}
    latencies = [(recorded_at[key] - uploaded_at[key]) * 1000 for key in recorded_at]
    wall = max(recorded_at.values()) - started  # first upload → last outcome, whatever the polling
    return {
        "images": size,
        "outcomes": len(index.records),
        "latency_ms": percentiles(latencies),
        "images_per_s": round(len(index.records) / wall, 1),
    }


def direct(stack: LocalStack, images: list[bytes], size: int) -> dict[str, Any]:
    """The same five steps called in-process one after another: the work without the orchestration."""
    import importlib

    from workflow.names import StackNames

    names = StackNames()
    handlers = {}
    for spec in FUNCTIONS:
        environment = function_environment(
            spec,
            names,
            aws_endpoint_url=stack.aws_endpoint_url,
            sagemaker_runtime_url=stack.info.model_endpoint_url if stack.info else "",
            threshold=0.85,
            state_machine_arn=stack.resources.state_machine_arn,
            log_level=stack.log_level,  # one level per service name in a process: the stack's
        )
        module = importlib.import_module(spec.handler.rsplit(".", 1)[0])
        handlers[spec.logical_id] = module.build(environment)
    s3 = stack.client("s3")
    durations = []

    for i in range(size):
        key = f"direct/{uuid.uuid4().hex[:8]}/{i}.png"
        put = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=images[i % len(images)])
        started = time.perf_counter()
        etag = put["ETag"].strip('"')
        state: dict[str, Any] = {"object": {"bucket": stack.resources.bucket, "key": key, "etag": etag}}
        with contextlib.redirect_stdout(io.StringIO()):  # the handlers' EMF lines
            for step in ("SerializeFunction", "ClassifyFunction", "FilterFunction", "RecordFunction"):
                state = handlers[step](state, InvocationContext.direct(step))
        durations.append((time.perf_counter() - started) * 1000)
    return {
        "images": size,
        "latency_ms": percentiles(durations),
        "mean_ms": round(statistics.fmean(durations), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1,50,500")
    parser.add_argument("--dataset", help="default: $SCONES_DATASET, else the shared copy")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scones-bench-flow-") as scratch:
        images = test_images(args.dataset, Path(scratch))
    results: dict[str, Any] = {"bursts": []}
    with LocalStack(store=ModelStore.default()) as stack:
        burst(stack, images, 4)  # warm-up: builds every function's handler once
        for size in (int(text) for text in args.sizes.split(",")):
            results["bursts"].append(burst(stack, images, size))
        results["direct"] = direct(stack, images, 50)
        singles = [b["latency_ms"]["p50"] for b in results["bursts"] if b["images"] == 1]
        single_p50 = statistics.median(singles) if singles else None  # over the one-image bursts
        results["single_image_p50_ms"] = single_p50
        results["orchestration_overhead_ratio"] = (
            None if single_p50 is None else round(single_p50 / results["direct"]["latency_ms"]["p50"], 1)
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results["bursts"]:
            print(
                f"{row['images']:>4} images: p50 {row['latency_ms']['p50']} ms, "
                f"p95 {row['latency_ms']['p95']} ms, {row['images_per_s']} images/s"
            )
        print(f"direct handler calls: p50 {results['direct']['latency_ms']['p50']} ms per image")
        print(
            "orchestration overhead (median single-image p50 / direct p50): "
            + (
                f"{ratio}x"
                if (ratio := results["orchestration_overhead_ratio"])
                else "n/a (no one-image burst)"
            )
        )


if __name__ == "__main__":
    main()
