"""Benchmark: wall time of the whole training run (staging included) with the default recipe.

Runs what `scones train` runs, into a throw-away store, and prints the wall time of each phase and
the test figures. Run alone on an otherwise idle machine: `python bench/training_time.py [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from staged_data import staged as stage_dataset

from scones.model_store import ModelStore
from training.train import Hyperparameters, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dataset", help="default: $SCONES_DATASET, else the shared copy")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scones-bench-train-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        staged = stage_dataset(args.dataset, root / "data", cache_dir=root / "cache")
        staged_at = time.perf_counter()
        metadata = train(
            staged.split_dir("train"),
            root / "model",
            Hyperparameters(),
            test_dir=staged.split_dir("test"),
            progress=False,
        )
        trained_at = time.perf_counter()
        ModelStore(root / "models").publish(root / "model")
        finished = time.perf_counter()
    test = metadata.metrics.get("test", {})
    seconds = {
        "staging": round(staged_at - started, 1),
        "training_calibration_export_evaluation": round(trained_at - staged_at, 1),
        "publish": round(finished - trained_at, 2),
        "total": round(finished - started, 1),
    }
    result: dict[str, Any] = {
        "recipe": metadata.hyperparameters,
        "architecture": metadata.architecture,
        "cpu_count": os.cpu_count(),
        "seconds": seconds,
        "test": {key: test.get(key) for key in ("n", "accuracy", "coverage", "accepted_accuracy", "ece")},
        "temperature": metadata.temperature,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for phase, value in seconds.items():
            print(f"{phase:>40}: {value} s")
        print(f"{'test':>40}: {result['test']}")


if __name__ == "__main__":
    main()
