"""Tests of cross-validation's pure parts: the fold carve, cross-fitted temperatures, test-sized draws."""

from __future__ import annotations

import numpy as np
import pytest

from training.crossval import (
    CrossValidationError,
    OutOfFold,
    Targets,
    calibrated_probabilities,
    draw_spread,
    fold_assignment,
    out_of_fold_logits,
    report,
    stratum_sizes,
    summary_lines,
)
from training.train import Hyperparameters, Split


def balanced_labels(per_class: int) -> np.ndarray:
    return np.array([0] * per_class + [1] * per_class, dtype=np.int64)


def test_folds_are_stratified_balanced_and_seeded() -> None:
    labels = balanced_labels(23)
    folds = fold_assignment(labels, 5, seed=7)
    for fold in range(5):
        per_class = [int(((folds == fold) & (labels == c)).sum()) for c in (0, 1)]
        assert all(count in (4, 5) for count in per_class), per_class
    assert np.array_equal(folds, fold_assignment(labels, 5, seed=7))
    assert not np.array_equal(folds, fold_assignment(labels, 5, seed=8))


def test_fold_carve_refuses_what_cannot_be_cross_validated() -> None:
    with pytest.raises(CrossValidationError, match="at least 2 folds"):
        fold_assignment(balanced_labels(10), 1, seed=0)
    with pytest.raises(CrossValidationError, match="bicycle has 3 images: fewer than 5 folds"):
        fold_assignment(balanced_labels(3), 5, seed=0)


def test_each_folds_temperature_comes_from_the_other_folds_only() -> None:
    rng = np.random.default_rng(0)
    labels = balanced_labels(40)
    folds = fold_assignment(labels, 4, seed=1)
    logits = rng.normal(size=(80, 2)) + 3 * np.eye(2)[labels]
    result = OutOfFold(logits[None], labels, folds, [0], 0.0)
    before = calibrated_probabilities(logits, result)
    flipped = labels.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]  # fold 0's own labels must not move its temperature
    after = calibrated_probabilities(logits, OutOfFold(logits[None], flipped, folds, [0], 0.0))
    np.testing.assert_allclose(after[folds == 0], before[folds == 0], rtol=1e-6)
    assert not np.allclose(after[folds == 1], before[folds == 1])
    np.testing.assert_allclose(before.sum(axis=1), 1.0)


def test_draws_of_a_perfect_model_always_clear_the_bars() -> None:
    labels = balanced_labels(50)
    probabilities = np.where(np.eye(2)[labels] == 1, 0.99, 0.01)
    targets = Targets(min_accuracy=0.97, min_coverage=0.9, min_accepted_accuracy=0.99, max_ece=0.03)
    spread = draw_spread(probabilities, labels, size=20, draws=50, targets=targets)
    assert spread["accuracy"] == {"median": 1.0, "p05": 1.0, "p95": 1.0}
    assert spread["ece"]["median"] == pytest.approx(0.01)
    assert spread["share_meeting_targets"] == {
        "accuracy": 1.0,
        "coverage": 1.0,
        "accepted_accuracy": 1.0,
        "ece": 1.0,
        "all": 1.0,
    }


def test_draws_show_the_spread_of_a_small_test_set() -> None:
    labels = balanced_labels(500)
    wrong = np.isin(np.arange(1000), [*range(25), *range(500, 525)])  # a 95 % model, sure of every answer
    predicted = np.where(wrong, 1 - labels, labels)
    probabilities = np.where(np.eye(2)[predicted] == 1, 0.95, 0.05)
    spread = draw_spread(probabilities, labels, size=200, draws=400, targets=Targets(min_accuracy=0.97))
    accuracy = spread["accuracy"]
    assert accuracy["p05"] < 0.95 < accuracy["p95"]
    assert 0.93 <= accuracy["median"] <= 0.97
    # at 95 % a 200-image test clears 0.97 by luck: P(at most 6 of Binomial(200, 0.05)) = 0.12
    assert 0.06 < spread["share_meeting_targets"]["accuracy"] < 0.22
    assert set(spread["share_meeting_targets"]) == {"accuracy", "all"}
    assert "share_meeting_targets" not in draw_spread(probabilities, labels, size=200, draws=10)


def test_a_figure_that_is_undefined_does_not_clear_its_bar() -> None:
    summary = {"accuracy": 0.5, "coverage": 0.0, "accepted_accuracy": None, "ece": 0.2}
    assert Targets(min_accepted_accuracy=0.9, max_ece=0.3).met(summary) == {
        "accepted_accuracy": False,
        "ece": True,
    }


@pytest.mark.parametrize("seeds", ["", ",", "0,0"])
def test_no_seed_or_a_repeated_seed_is_refused_before_any_training(seeds: str) -> None:
    labels = balanced_labels(10)
    split = Split(np.zeros((20, 32, 32, 3), dtype=np.uint8), labels, [f"{i}.png" for i in range(20)])
    with pytest.raises(CrossValidationError, match="one or more different seeds"):
        out_of_fold_logits(split, Hyperparameters(seeds=seeds), folds=2, fold_seed=0, progress=False)


def test_draws_keep_the_pooled_class_proportions_at_any_size() -> None:
    assert stratum_sizes([500, 500], 200) == [100, 100]
    assert stratum_sizes([500, 500], 201) in ([101, 100], [100, 101])
    assert stratum_sizes([300, 700], 11) == [3, 8]
    assert stratum_sizes([40, 0], 7) == [7, 0]
    labels = np.array([0] * 30 + [1] * 70, dtype=np.int64)
    probabilities = np.where(np.eye(2)[labels] == 1, 0.9, 0.1)
    spread = draw_spread(probabilities, labels, size=11, draws=5)
    assert spread["accuracy"]["median"] == 1.0
    assert spread["coverage"]["median"] == 1.0


def test_the_report_pools_each_seed_and_their_ensemble_and_reads_as_text() -> None:
    rng = np.random.default_rng(5)
    labels = balanced_labels(30)
    folds = fold_assignment(labels, 3, seed=0)
    logits = np.stack([rng.normal(size=(60, 2)) + 2.5 * np.eye(2)[labels] for _ in range(2)])
    document = report(
        OutOfFold(logits, labels, folds, [4, 9], 1.0), draw_size=20, draws=30, targets=Targets(max_ece=0.1)
    )
    assert list(document["models"]) == ["seed 4", "seed 9", "ensemble of seeds 4,9"]
    ensemble = document["models"]["ensemble of seeds 4,9"]
    expected = (logits.mean(axis=0).argmax(axis=1) == labels).mean()
    assert ensemble["pooled"]["accuracy"] == pytest.approx(expected)
    text = "\n".join(summary_lines(document))
    assert f"ensemble of seeds 4,9: accuracy {expected:.4f}" in text
    assert "ece in draws of 20: median" in text
    assert "share of draws clearing the bars: ece" in text
