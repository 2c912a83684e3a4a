"""Benchmark: cold import time of each Lambda handler module (fresh interpreter per sample); torch stays out.

Lambda pays a handler's import on every cold start. For each module this starts a new Python
process N times, times `import handlers.<name>` inside it, and reports the median; it also checks
that neither torch nor onnxruntime got imported. `python bench/handler_import.py [--runs 7] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

HANDLERS = ("start", "serialize", "classify", "filter", "record")
PROBE = (
    "import sys, time; started = time.perf_counter(); import handlers.{name}; "
    "elapsed = time.perf_counter() - started; "
    "print(elapsed, int('torch' in sys.modules), int('onnxruntime' in sys.modules))"
)


def measure(name: str, runs: int) -> dict[str, object]:
    samples, heavy = [], False
    for _ in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", PROBE.format(name=name)], capture_output=True, text=True, check=True
        ).stdout.split()
        samples.append(float(output[0]))
        heavy = heavy or output[1] == "1" or output[2] == "1"
    return {
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
        "imports_torch": heavy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {name: measure(name, args.runs) for name in HANDLERS}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, result in results.items():
        print(
            f"handlers.{name:<10} median {result['median_s']} s, max {result['max_s']} s, "
            f"imports torch: {result['imports_torch']}"
        )


if __name__ == "__main__":
    main()
