"""Tests of the evaluation figures (ECE, accuracy, coverage, confusion) on hand-computed examples."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pytest

from scones.evaluation import DEFAULT_THRESHOLD, expected_calibration_error, summarize
from scones.labels import LABELS


def probs(*rows: tuple[float, ...]) -> npt.NDArray[np.float64]:
    return np.asarray(rows, dtype=np.float64)


def labels(*values: int) -> npt.NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64)


# expected_calibration_error ----------------------------------------------------------------------


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    # Four predictions at 75% confidence, three of them right: perfectly calibrated.
    p = probs((0.75, 0.25), (0.75, 0.25), (0.75, 0.25), (0.75, 0.25))
    assert expected_calibration_error(p, labels(0, 0, 0, 1)) == pytest.approx(0.0, abs=1e-12)


def test_ece_is_zero_for_certain_and_correct_predictions() -> None:
    p = probs((1.0, 0.0), (0.0, 1.0), (1.0, 0.0))
    assert expected_calibration_error(p, labels(0, 1, 0)) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_overconfident_model() -> None:
    # 90% confident, right half the time: a gap of 0.4 in the one bin used.
    p = probs((0.9, 0.1), (0.1, 0.9), (0.9, 0.1), (0.1, 0.9))
    assert expected_calibration_error(p, labels(0, 0, 1, 1)) == pytest.approx(0.4)


def test_ece_weights_each_bin_by_its_share() -> None:
    # Bin around 0.95: two samples, one right -> |0.95 - 0.5| = 0.45, weight 1/2.
    # Bin around 0.65: two samples, both right -> |0.65 - 1.0| = 0.35, weight 1/2.
    p = probs((0.95, 0.05), (0.05, 0.95), (0.65, 0.35), (0.35, 0.65))
    y = labels(0, 0, 0, 1)
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.45 + 0.5 * 0.35)


def test_ece_with_coarser_bins_merges_the_gaps() -> None:
    # Same data, two bins (0, 0.5] and (0.5, 1]: one bin, mean confidence 0.8, accuracy 0.75.
    p = probs((0.95, 0.05), (0.05, 0.95), (0.65, 0.35), (0.35, 0.65))
    y = labels(0, 0, 0, 1)
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.05)


def test_ece_of_an_underconfident_model_is_positive_too() -> None:
    # 62% confident, always right: gap 0.38.
    p = probs((0.62, 0.38), (0.38, 0.62))
    assert expected_calibration_error(p, labels(0, 1)) == pytest.approx(0.38)


def test_ece_handles_more_than_two_classes() -> None:
    # Confidence 0.5 (bin (0.4667, 0.5333]), one right, one wrong: gap 0.
    p = probs((0.5, 0.3, 0.2), (0.2, 0.5, 0.3))
    assert expected_calibration_error(p, labels(0, 2)) == pytest.approx(0.0, abs=1e-12)


def test_ece_returns_a_python_float() -> None:
    value = expected_calibration_error(probs((0.9, 0.1)), labels(0))
    assert type(value) is float
    assert value == pytest.approx(0.1)


# summarize ---------------------------------------------------------------------------------------

# Five predictions at the default threshold 0.85:
#   row  p(bicycle)  label  predicted  correct  accepted
#   0    0.90        0      0          yes      yes
#   1    0.62        0      0          yes      no
#   2    0.22        1      1          yes      no  (confidence 0.78)
#   3    0.95        1      0          no       yes
#   4    0.10        1      1          yes      yes (confidence 0.90)
EXAMPLE_P = probs((0.90, 0.10), (0.62, 0.38), (0.22, 0.78), (0.95, 0.05), (0.10, 0.90))
EXAMPLE_Y = labels(0, 0, 1, 1, 1)


def test_summarize_counts_and_accuracies() -> None:
    report = summarize(EXAMPLE_P, EXAMPLE_Y)
    assert report["n"] == 5
    assert report["accuracy"] == pytest.approx(4 / 5)
    assert report["per_class"] == {"bicycle": pytest.approx(1.0), "motorcycle": pytest.approx(2 / 3)}
    assert report["threshold"] == DEFAULT_THRESHOLD == 0.85


def test_summarize_coverage_and_accepted_accuracy() -> None:
    report = summarize(EXAMPLE_P, EXAMPLE_Y)
    assert report["coverage"] == pytest.approx(3 / 5)
    assert report["accepted_accuracy"] == pytest.approx(2 / 3)


def test_summarize_confusion_counts() -> None:
    report = summarize(EXAMPLE_P, EXAMPLE_Y)
    assert report["confusion"] == {
        "bicycle": {"bicycle": 2, "motorcycle": 0},
        "motorcycle": {"bicycle": 1, "motorcycle": 2},
    }
    total = sum(count for row in report["confusion"].values() for count in row.values())
    assert total == report["n"]


def test_summarize_ece_and_label_order() -> None:
    report = summarize(EXAMPLE_P, EXAMPLE_Y)
    # bins: {0.90, 0.90} both right: gap 0.10, weight 2/5; {0.62} right: 0.38; {0.78} right: 0.22;
    # {0.95} wrong: 0.95; the last three weigh 1/5 each.
    expected = 0.4 * 0.10 + 0.2 * 0.38 + 0.2 * 0.22 + 0.2 * 0.95
    assert report["ece"] == pytest.approx(expected)
    assert report["ece"] == pytest.approx(expected_calibration_error(EXAMPLE_P, EXAMPLE_Y))
    assert report["label_order"] == list(LABELS) == ["bicycle", "motorcycle"]


def test_summarize_is_json_serializable_with_plain_types() -> None:
    report = summarize(EXAMPLE_P, EXAMPLE_Y)
    assert json.loads(json.dumps(report))["accuracy"] == pytest.approx(0.8)
    assert type(report["n"]) is int
    for key in ("accuracy", "coverage", "accepted_accuracy", "ece"):
        assert type(report[key]) is float, key
    assert all(type(count) is int for row in report["confusion"].values() for count in row.values())


def test_summarize_accepts_a_confidence_exactly_at_the_threshold() -> None:
    report = summarize(probs((0.85, 0.15), (0.2, 0.8)), labels(0, 1), threshold=0.85)
    assert report["coverage"] == pytest.approx(0.5)
    assert report["accepted_accuracy"] == pytest.approx(1.0)
    assert report["threshold"] == 0.85


def test_summarize_accepted_accuracy_is_none_when_nothing_is_accepted() -> None:
    report = summarize(probs((0.6, 0.4), (0.3, 0.7)), labels(0, 0), threshold=0.99)
    assert report["coverage"] == 0.0
    assert report["accepted_accuracy"] is None
    assert report["accuracy"] == pytest.approx(0.5)


def test_summarize_with_a_low_threshold_accepts_everything() -> None:
    report = summarize(EXAMPLE_P, EXAMPLE_Y, threshold=0.5)
    assert report["coverage"] == 1.0
    assert report["accepted_accuracy"] == pytest.approx(report["accuracy"])


def test_summarize_per_class_is_none_for_an_absent_class() -> None:
    report = summarize(probs((0.9, 0.1), (0.3, 0.7)), labels(0, 0))
    assert report["per_class"] == {"bicycle": pytest.approx(0.5), "motorcycle": None}
    assert report["confusion"]["motorcycle"] == {"bicycle": 0, "motorcycle": 0}
    assert report["confusion"]["bicycle"] == {"bicycle": 1, "motorcycle": 1}


def test_summarize_of_nothing() -> None:
    report = summarize(np.zeros((0, len(LABELS))), labels())
    assert report["n"] == 0
    assert report["accuracy"] == 0.0
    assert report["coverage"] == 0.0
    assert report["accepted_accuracy"] is None
    assert report["ece"] == 0.0
    assert report["per_class"] == {"bicycle": None, "motorcycle": None}
    assert report["confusion"] == {
        "bicycle": {"bicycle": 0, "motorcycle": 0},
        "motorcycle": {"bicycle": 0, "motorcycle": 0},
    }


def test_summarize_accepts_float32_and_lists() -> None:
    as_float32 = summarize(EXAMPLE_P.astype(np.float32), EXAMPLE_Y)
    as_lists = summarize(EXAMPLE_P.tolist(), EXAMPLE_Y.tolist())
    reference = summarize(EXAMPLE_P, EXAMPLE_Y)
    for report in (as_float32, as_lists):
        assert report["accuracy"] == pytest.approx(reference["accuracy"])
        assert report["coverage"] == pytest.approx(reference["coverage"])
        assert report["confusion"] == reference["confusion"]
        assert report["ece"] == pytest.approx(reference["ece"], abs=1e-6)
