"""Benchmark: the load run. A burst of uploads (10 % bad inputs of every kind, 5 % duplicate deliveries)
with a 10-second endpoint outage in the middle, through a fresh local stack; then the replay of what
the outage failed, and the accounting: uploads = accepted + review + failed, lost 0, duplicated 0.

`python bench/load.py --uploads 1000 --json`. Run alone on an idle machine: throughput and latency
(p50/p99, upload → first outcome record) are medians of one run on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import fields
from pathlib import Path

from staged_data import test_images

from scones.model_store import ModelStore
from service.load_run import LoadPlan, run_load
from service.local_stack import LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    defaults = LoadPlan()
    parser.add_argument("--uploads", type=int, default=defaults.uploads)
    parser.add_argument("--outage-s", type=float, default=defaults.outage_s)
    parser.add_argument("--bad-share", type=float, default=defaults.bad_share)
    parser.add_argument("--duplicate-share", type=float, default=defaults.duplicate_share)
    parser.add_argument("--dataset", help="default: $SCONES_DATASET, else the shared copy")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    plan = LoadPlan(**{f.name: getattr(args, f.name) for f in fields(LoadPlan) if hasattr(args, f.name)})
    with tempfile.TemporaryDirectory(prefix="scones-bench-load-") as scratch:
        images = test_images(args.dataset, Path(scratch))
    with LocalStack(store=ModelStore.default()) as stack:
        result = run_load(stack, images, plan)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['uploads']} uploads: {result['accepted']} accepted, {result['review']} review, "
        f"{result['failed']} failed; lost {result['lost']}, duplicated {result['duplicated']}"
    )
    print(f"before replay: {result['before_replay']}; replayed {result['replayed']}")
    print(
        f"{result['images_per_s']} images/s, latency p50 {result['latency_ms']['p50']} ms, "
        f"p99 {result['latency_ms']['p99']} ms; wrong outcomes: {len(result['wrong_outcomes'])}"
    )


if __name__ == "__main__":
    main()
