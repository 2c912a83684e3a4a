"""Latency and throughput of the local endpoint over real HTTP on loopback.

Starts a `LocalEndpoint` (uvicorn in a thread) on an exported model, warms it up, then measures
from a client in the same process:

- single-image latency: sequential `POST /invocations` of real 32x32 PNGs (`image/png`) over one
  persistent keep-alive `http.client.HTTPConnection`; p50/p90/p99 of the wall-clock round trip;
- batch throughput: `application/json` batches (`{"instances": [{"b64": ...}]}`) of several sizes;
  the median round trip per batch and the images per second it implies.

Each number includes HTTP parsing, base64/JSON, preprocessing (decode, thumbnail, upscale,
normalize), onnxruntime and the JSON answer. The client shares the CPU with the server, so on a
small machine the numbers are an upper bound on latency. Nothing is trained.

    .venv/bin/python bench/endpoint_latency.py --model DIR --images STAGED/test [--json]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from staged_data import test_images

from scones.model_metadata import ModelMetadata
from scones.model_store import ModelStore, NoModelError
from service.endpoint import LocalEndpoint


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def load_images(folder: Path, limit: int = 1000) -> list[bytes]:
    paths = sorted(folder.rglob("*.png"))[:limit]
    if not paths:
        sys.exit(f"no PNG images under {folder}")
    return [path.read_bytes() for path in paths]


def post(connection: http.client.HTTPConnection, body: bytes, content_type: str) -> bytes:
    connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
    return answer


def measure_latency(
    connection: http.client.HTTPConnection, images: list[bytes], requests: int
) -> dict[str, float]:
    seconds = []
    for index in range(requests):
        data = images[index % len(images)]
        started = time.perf_counter()
        post(connection, data, "image/png")
        seconds.append(time.perf_counter() - started)
    milliseconds = [s * 1000.0 for s in seconds]
    return {
        "requests": requests,
        "p50_ms": percentile(milliseconds, 50),
        "p90_ms": percentile(milliseconds, 90),
        "p99_ms": percentile(milliseconds, 99),
        "mean_ms": statistics.fmean(milliseconds),
        "requests_per_s": requests / sum(seconds),
    }


def measure_batch(
    connection: http.client.HTTPConnection, images: list[bytes], size: int, rounds: int
) -> dict[str, float]:
    encoded = [base64.b64encode(images[i % len(images)]).decode("ascii") for i in range(size)]
    body = json.dumps({"instances": [{"b64": e} for e in encoded]}).encode()
    answer = json.loads(post(connection, body, "application/json"))  # warm this shape
    if len(answer["predictions"]) != size or any(answer["errors"]):
        raise RuntimeError(f"the batch of {size} did not come back whole: {answer['errors']}")
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        post(connection, body, "application/json")
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    return {
        "batch": size,
        "rounds": rounds,
        "body_bytes": len(body),
        "median_ms": median * 1000.0,
        "images_per_s": size / median,
    }


def run(model_dir: Path, images: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    metadata = ModelMetadata.read(model_dir)
    with LocalEndpoint(name="bench", model_dir=model_dir, threads=args.threads) as endpoint:
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=60)
        try:
            for index in range(args.warmup):
                post(connection, images[index % len(images)], "image/png")
            latency = measure_latency(connection, images, args.requests)
            batches = [measure_batch(connection, images, size, args.rounds) for size in args.batches]
        finally:
            connection.close()
    return {
        "model_dir": str(model_dir),
        "model_version": metadata.version,
        "architecture": metadata.architecture,
        "input_size": metadata.input_size,
        "onnx_threads": args.threads,
        "cpus": os.cpu_count(),
        "distinct_images": len(images),
        "single_image": latency,
        "batches": batches,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"model {result['model_version']}: {result['architecture']}; input {result['input_size']} px")
    print(
        f"onnxruntime threads {result['onnx_threads']}, {result['cpus']} CPUs, client and server share them"
    )
    single = result["single_image"]
    print(f"\nsingle 32x32 PNG, {single['requests']} sequential requests on one keep-alive connection")
    print(f"  p50 {single['p50_ms']:7.2f} ms")
    print(f"  p90 {single['p90_ms']:7.2f} ms")
    print(f"  p99 {single['p99_ms']:7.2f} ms")
    print(f"  mean {single['mean_ms']:6.2f} ms  ({single['requests_per_s']:.0f} requests/s)")
    print("\nJSON batches (median round trip)")
    print(f"  {'batch':>5}  {'body KB':>8}  {'median ms':>10}  {'images/s':>9}")
    for row in result["batches"]:
        print(
            f"  {row['batch']:>5}  {row['body_bytes'] / 1024:>8.1f}  {row['median_ms']:>10.2f}"
            f"  {row['images_per_s']:>9.0f}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, help="exported model folder (default: the store's current)")
    parser.add_argument(
        "--images", type=Path, help="folder of PNGs, e.g. the staged test split (default: stage one)"
    )
    parser.add_argument(
        "--dataset", help="without --images: stage from (default: $SCONES_DATASET, else the shared copy)"
    )
    parser.add_argument("--requests", type=int, default=500, help="sequential single-image requests")
    parser.add_argument("--warmup", type=int, default=50, help="requests before measuring")
    parser.add_argument(
        "--batches", type=lambda text: [int(n) for n in text.split(",")], default=[1, 8, 32, 64]
    )
    parser.add_argument("--rounds", type=int, default=30, help="requests per batch size")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="onnxruntime intra-op threads (as `scones serve`)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        model_dir: Path = args.model or ModelStore.default().current_path()
    except NoModelError as error:
        sys.exit(f"{error}, or pass --model DIR")
    if args.images is not None:
        images = load_images(args.images)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-staged-") as scratch:
            images = test_images(args.dataset, Path(scratch))
    result = run(model_dir, images, args)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
