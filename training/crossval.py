"""K-fold cross-validation of the training recipe on `train/` alone, and what a 200-image test can show.

A 100-image validation split cannot tell two recipes apart, and a 200-image test set cannot say
whether a model meets a target: one image is half a point. This trains the recipe on k-1 folds of
`train/` and predicts the held-out fold, k times, so every training image gets one out-of-fold
prediction. The pooled figures (accuracy, coverage and accuracy at the threshold, ECE) rest on the
whole training set. The temperature of each fold is fitted on the other folds' predictions, as
`train` fits it on a held-out split. Then it draws many stratified test-sized samples from the pooled
predictions, to show how far a test set of that size moves each figure by chance.
`test/` is never read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scones.evaluation import DEFAULT_THRESHOLD, summarize
from scones.labels import LABELS
from scones.preprocessing import PreprocessConfig
from service.arguments import at_least, probability
from training.train import (
    Hyperparameters,
    Split,
    add_hyperparameter_flags,
    hyperparameters_from,
    load_split,
    subset,
)

FIGURES = ("accuracy", "coverage", "accepted_accuracy", "ece")


class CrossValidationError(ValueError):
    """The data or the settings cannot be cross-validated (too few images per fold, no seeds)."""


@dataclass(frozen=True)
class Targets:
    """Bars a test set's figures must clear; None leaves a figure unjudged."""

    min_accuracy: float | None = None
    min_coverage: float | None = None
    min_accepted_accuracy: float | None = None
    max_ece: float | None = None

    def judged(self) -> dict[str, tuple[str, float]]:
        """figure -> (">=" or "<=", bound), for the bars that are set."""
        bars = {
            "accuracy": (">=", self.min_accuracy),
            "coverage": (">=", self.min_coverage),
            "accepted_accuracy": (">=", self.min_accepted_accuracy),
            "ece": ("<=", self.max_ece),
        }
        return {name: (sign, bound) for name, (sign, bound) in bars.items() if bound is not None}

    def met(self, summary: dict[str, Any]) -> dict[str, bool]:
        """Which set bars `summary` clears (a figure that is undefined, like accuracy among none, fails)."""
        result = {}
        for name, (sign, bound) in self.judged().items():
            value = summary[name]
            result[name] = value is not None and (value >= bound if sign == ">=" else value <= bound)
        return result


def fold_assignment(labels: npt.NDArray[np.int64], folds: int, seed: int) -> npt.NDArray[np.int64]:
    """Each image's fold: stratified by class and seeded; within a class, fold sizes differ by at most one."""
    if folds < 2:
        raise CrossValidationError("cross-validation needs at least 2 folds")
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(labels), dtype=np.int64)
    for label in range(len(LABELS)):
        members = rng.permutation(np.flatnonzero(labels == label))
        if 0 < len(members) < folds:
            raise CrossValidationError(f"{LABELS[label]} has {len(members)} images: fewer than {folds} folds")
        for fold, chunk in enumerate(np.array_split(members, folds)):
            assignment[chunk] = fold
    return assignment


@dataclass(frozen=True)
class OutOfFold:
    """Held-out logits: one row per training image and seed, predicted by the member that never saw it."""

    logits: npt.NDArray[np.float64]  # (seeds, images, classes)
    labels: npt.NDArray[np.int64]
    folds: npt.NDArray[np.int64]
    seeds: list[int]
    seconds: float


def out_of_fold_logits(
    split: Split, hp: Hyperparameters, *, folds: int, fold_seed: int, progress: bool = True
) -> OutOfFold:
    """Train one member per (fold, seed) on the other folds, exactly as `train` trains one; keep its
    held-out logits (flip-averaged when the recipe uses flip TTA). The folds take the place of the
    validation carve: `val_fraction` and `split_seed` are not used."""
    import torch

    from training.model import Ensemble
    from training.train import predict_logits, train_member

    seeds = hp.seed_list
    if not seeds or len(set(seeds)) != len(seeds):
        raise CrossValidationError(f"--seeds {hp.seeds!r}: give one or more different seeds, like 0,1,2")
    assignment = fold_assignment(split.labels, folds, fold_seed)  # refuses too few images, before training
    started = time.perf_counter()
    torch.set_num_threads(hp.threads or os.cpu_count() or 1)
    config = PreprocessConfig(input_size=hp.image_size)
    logits = np.zeros((len(seeds), len(split.labels), len(LABELS)))
    no_validation = subset(split, np.zeros(len(split.labels), dtype=bool))
    for fold in range(folds):
        held_out = assignment == fold
        fit, predict = subset(split, ~held_out), subset(split, held_out)
        for row, seed in enumerate(seeds):
            member = train_member(seed, fit, no_validation, hp, config, progress=progress)
            predicted = predict_logits(Ensemble([member], flip_tta=hp.flip_tta), predict, config)
            logits[row, held_out] = predicted.double().numpy()
            if progress:
                accuracy = float((logits[row, held_out].argmax(1) == split.labels[held_out]).mean())
                print(f"fold {fold + 1}/{folds} seed {seed}: accuracy {accuracy:.3f}", file=sys.stderr)
    return OutOfFold(logits, split.labels, assignment, seeds, time.perf_counter() - started)


def calibrated_probabilities(logits: npt.NDArray[np.float64], result: OutOfFold) -> npt.NDArray[np.float64]:
    """Softmax of each fold's logits at the temperature fitted on the other folds' logits."""
    import torch

    from training.model import fit_temperature

    probabilities = np.zeros_like(logits)
    for fold in np.unique(result.folds):
        inside, others = result.folds == fold, result.folds != fold
        temperature = fit_temperature(
            torch.from_numpy(logits[others]), torch.from_numpy(result.labels[others])
        )
        probabilities[inside] = torch.softmax(torch.from_numpy(logits[inside]) / temperature, dim=1).numpy()
    return probabilities


def stratum_sizes(class_sizes: Sequence[int], size: int) -> list[int]:
    """`size` split over the classes in proportion to `class_sizes` (largest remainders get the rest)."""
    total = sum(class_sizes)
    shares = [size * count / total for count in class_sizes]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - shares[i])
    for index in by_remainder[: size - sum(counts)]:
        counts[index] += 1
    return counts


def draw_spread(
    probabilities: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    *,
    size: int,
    draws: int,
    threshold: float = DEFAULT_THRESHOLD,
    targets: Targets | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Median and 5th-95th percentiles of each figure over stratified draws of `size` images
    (sampled with replacement, in the pooled class proportions), and how often the draws clear each
    of the `targets`' bars."""
    targets = targets or Targets()
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == label) for label in range(len(LABELS))]
    counts = stratum_sizes([len(pool) for pool in pools], size)
    samples: dict[str, list[float]] = {name: [] for name in FIGURES}
    cleared = dict.fromkeys([*targets.judged(), "all"], 0)
    for _ in range(draws):
        chosen = np.concatenate([rng.choice(pool, count) for pool, count in zip(pools, counts, strict=True)])
        summary = summarize(probabilities[chosen], labels[chosen], threshold)
        for name in FIGURES:
            if summary[name] is not None:
                samples[name].append(float(summary[name]))
        met = targets.met(summary)
        for name, ok in met.items():
            cleared[name] += ok
        cleared["all"] += all(met.values())
    spread: dict[str, Any] = {
        name: {
            "median": round(float(np.median(values)), 4),
            "p05": round(float(np.percentile(values, 5)), 4),
            "p95": round(float(np.percentile(values, 95)), 4),
        }
        for name, values in samples.items()
        if values
    }
    if targets.judged():
        spread["share_meeting_targets"] = {name: round(count / draws, 3) for name, count in cleared.items()}
    return spread


def report(
    result: OutOfFold,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    draw_size: int = 200,
    draws: int = 1000,
    targets: Targets | None = None,
) -> dict[str, Any]:
    """Pooled figures for each seed alone and for the ensemble of all seeds (mean logits)."""
    candidates = {f"seed {seed}": result.logits[row] for row, seed in enumerate(result.seeds)}
    if len(result.seeds) > 1:
        candidates[f"ensemble of seeds {','.join(map(str, result.seeds))}"] = result.logits.mean(axis=0)
    models: dict[str, Any] = {}
    for name, logits in candidates.items():
        probabilities = calibrated_probabilities(logits, result)
        pooled = summarize(probabilities, result.labels, threshold)
        correct = probabilities.argmax(axis=1) == result.labels
        models[name] = {
            "pooled": {key: pooled[key] for key in ("n", *FIGURES, "per_class")},
            "fold_accuracy": [
                round(float(correct[result.folds == f].mean()), 4) for f in np.unique(result.folds)
            ],
            f"draws_of_{draw_size}": draw_spread(
                probabilities,
                result.labels,
                size=draw_size,
                draws=draws,
                threshold=threshold,
                targets=targets,
            ),
        }
    return {
        "folds": int(result.folds.max()) + 1,
        "n": len(result.labels),
        "threshold": threshold,
        "seconds": round(result.seconds, 1),
        "models": models,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_crossval_flags(parser)
    parser.add_argument("train", type=Path, help="a <class>/<image> folder: the training split")
    return parser.parse_args(argv)


def add_crossval_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folds", type=at_least(2, "folds"), default=5, help="how many folds (default 5)")
    parser.add_argument("--fold-seed", type=int, default=777, help="the seed of the stratified fold carve")
    parser.add_argument(
        "--draw-size",
        type=at_least(len(LABELS), "images per draw"),
        default=200,
        help="the test-set size to draw (default 200)",
    )
    parser.add_argument(
        "--draws", type=at_least(1, "draws"), default=1000, help="how many draws (default 1000)"
    )
    parser.add_argument("--threshold", type=probability, default=DEFAULT_THRESHOLD)
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    bars = parser.add_argument_group("bars: how often a draw clears them (e.g. an acceptance test's)")
    for bar in fields(Targets):
        bars.add_argument("--" + bar.name.replace("_", "-"), type=probability, default=None)
    add_hyperparameter_flags(parser)


def cross_validate_folder(train_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The whole run for a parsed command line: load, cross-validate, report."""
    hp: Hyperparameters = hyperparameters_from(args)
    split = load_split(train_dir, hp.limit_per_class or None)
    result = out_of_fold_logits(
        split, hp, folds=args.folds, fold_seed=args.fold_seed, progress=not args.no_progress
    )
    targets = Targets(**{bar.name: getattr(args, bar.name) for bar in fields(Targets)})
    document = report(
        result, threshold=args.threshold, draw_size=args.draw_size, draws=args.draws, targets=targets
    )
    unused = ("val_fraction", "split_seed")  # the folds take the validation carve's place
    recipe = {name: value for name, value in asdict(hp).items() if name not in unused}
    return {"train": str(train_dir), "hyperparameters": recipe, **document}


def summary_lines(document: dict[str, Any]) -> list[str]:
    """The report for people: pooled figures, then the spread over test-sized draws, per model."""
    lines = [f"{document['folds']}-fold cross-validation of {document['n']} images ({document['seconds']} s)"]
    for name, model in document["models"].items():
        pooled = model["pooled"]
        accepted = pooled["accepted_accuracy"]
        lines.append(
            f"{name}: accuracy {pooled['accuracy']:.4f}, coverage {pooled['coverage']:.3f}, accuracy among "
            f"accepted {'n/a' if accepted is None else f'{accepted:.4f}'}, ECE {pooled['ece']:.4f}; "
            f"per fold {' '.join(f'{value:.3f}' for value in model['fold_accuracy'])}"
        )
        for key, spread in model.items():
            if not key.startswith("draws_of_"):
                continue
            size = key.removeprefix("draws_of_")
            for figure in FIGURES:
                if figure in spread:
                    low, mid, high = (spread[figure][k] for k in ("p05", "median", "p95"))
                    lines.append(f"  {figure} in draws of {size}: median {mid} (5-95 %: {low}-{high})")
            if "share_meeting_targets" in spread:
                shares = ", ".join(f"{k} {v}" for k, v in spread["share_meeting_targets"].items())
                lines.append(f"  share of draws clearing the bars: {shares}")
    return lines


def print_report(document: dict[str, Any], *, as_json: bool) -> None:
    print(json.dumps(document, indent=2) if as_json else "\n".join(summary_lines(document)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print_report(cross_validate_folder(args.train, args), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
