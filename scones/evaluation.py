"""Classifier quality figures from probabilities and true labels: accuracy, coverage, calibration (ECE)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from scones.datasets import read_labeled_folder
from scones.defaults import CONFIDENCE_THRESHOLD
from scones.labels import LABELS
from scones.preprocessing import ImageRejected, preprocess

if TYPE_CHECKING:
    from scones.inference import OnnxClassifier

DEFAULT_THRESHOLD = CONFIDENCE_THRESHOLD
ECE_BINS = 15


def expected_calibration_error(
    probabilities: npt.NDArray[np.floating[Any]], labels: npt.NDArray[np.integer[Any]], bins: int = ECE_BINS
) -> float:
    """ECE with equal-width confidence bins: the gap between confidence and accuracy, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(ece)


def summarize(
    probabilities: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.integer[Any]],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """The evaluation report: n, accuracy, per-class accuracy, coverage and accuracy at the threshold, ECE."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    predicted = probabilities.argmax(axis=1)
    correct = predicted == labels
    accepted = probabilities.max(axis=1) >= threshold
    confusion = {
        true: {pred: int(((labels == i) & (predicted == j)).sum()) for j, pred in enumerate(LABELS)}
        for i, true in enumerate(LABELS)
    }
    return {
        "n": n,
        "accuracy": float(correct.mean()) if n else 0.0,
        "per_class": {
            name: float(correct[labels == i].mean()) if (labels == i).any() else None
            for i, name in enumerate(LABELS)
        },
        "threshold": threshold,
        "coverage": float(accepted.mean()) if n else 0.0,
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
        "ece": expected_calibration_error(probabilities, labels) if n else 0.0,
        "confusion": confusion,
        "label_order": list(LABELS),
    }


def evaluate_folder(
    folder: Path, classifier: OnnxClassifier, *, threshold: float = DEFAULT_THRESHOLD, batch_size: int = 64
) -> dict[str, Any]:
    """Evaluate a served model on a `<class>/<image>` folder through the serving preprocessing."""
    images = read_labeled_folder(folder)
    config = classifier.preprocess_config
    inputs, labels, rejected = [], [], []
    for image in images:
        try:
            inputs.append(preprocess(image.data, config))
            labels.append(image.label)
        except ImageRejected as error:
            rejected.append({"path": image.relative_path, "reason": error.reason})
    batches = [
        classifier.predict_inputs(np.stack(inputs[i : i + batch_size]))
        for i in range(0, len(inputs), batch_size)
    ]
    probabilities = np.concatenate(batches) if batches else np.zeros((0, len(LABELS)))
    if list(classifier.labels) != list(LABELS):  # the model answers in its own label order
        missing = sorted(set(LABELS) - set(classifier.labels))
        if missing:
            raise ValueError(f"model {classifier.version} has no output for {', '.join(missing)}")
        probabilities = probabilities[:, [classifier.labels.index(name) for name in LABELS]]
    report = summarize(probabilities, np.asarray(labels, dtype=np.int64), threshold)
    report.update(model_version=classifier.version, rejected=rejected, folder=str(folder))
    return report
