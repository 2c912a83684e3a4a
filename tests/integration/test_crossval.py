"""Cross-validation on a tiny real subset: every image predicted once, by members that never saw it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import training.train
from training.crossval import main
from training.staging import StagedDataset


def test_every_image_is_predicted_by_members_that_never_trained_on_it(
    staged: StagedDataset, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_train_member = training.train.train_member
    trained_on: list[set[str]] = []

    def recording_train_member(seed: int, train: training.train.Split, *args: Any, **kwargs: Any) -> Any:
        trained_on.append(set(train.paths))
        return real_train_member(seed, train, *args, **kwargs)

    monkeypatch.setattr(training.train, "train_member", recording_train_member)
    predicted: list[set[str]] = []
    real_predict = training.train.predict_logits

    def recording_predict(model: Any, split: training.train.Split, *args: Any, **kwargs: Any) -> Any:
        predicted.append(set(split.paths))
        return real_predict(model, split, *args, **kwargs)

    monkeypatch.setattr(training.train, "predict_logits", recording_predict)
    train_dir: Path = staged.split_dir("train")
    flags = ["--folds", "3", "--seeds", "0,1", "--limit-per-class", "6", "--image-size", "32"]
    flags += [
        "--epochs",
        "1",
        "--ema-decay",
        "0",
        "--draws",
        "20",
        "--min-accuracy",
        "0.97",
        "--no-progress",
        "--json",
    ]
    assert main([*flags, str(train_dir)]) == 0
    document = json.loads(capsys.readouterr().out)

    assert len(trained_on) == len(predicted) == 3 * 2, "one member per fold and seed"
    for seen, held_out in zip(trained_on, predicted, strict=True):
        assert not seen & held_out
        assert len(seen) + len(held_out) == 12
    assert set().union(*predicted) == set().union(*trained_on), "every image held out once"
    assert all((train_dir / path).is_file() for path in set().union(*predicted)), "train/ only"
    assert document["n"] == 12 and document["folds"] == 3
    assert set(document["models"]) == {"seed 0", "seed 1", "ensemble of seeds 0,1"}
    for model in document["models"].values():
        assert model["pooled"]["n"] == 12
        assert len(model["fold_accuracy"]) == 3
        assert set(model["draws_of_200"]["share_meeting_targets"]) == {"accuracy", "all"}
