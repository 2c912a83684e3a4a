"""training/retrain.py on small real subsets: a candidate trained on shuffled labels is refused, a sound one
replacing a bad serving model is promoted, and the reviewed labels are split between training and hold-out."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from scones.model_metadata import ModelMetadata
from scones.model_store import ModelStore
from scones.registry import BucketRegistry, record_promotion
from tests.conftest import SMALL_RECIPE
from training.retrain import retrain, split_labels, table
from training.staging import StagedDataset


def swapped_classes(train: Path, out: Path) -> Path:
    """The training split with every label wrong: bicycles filed as motorcycles and back."""
    for source, target in (("bicycle", "motorcycle"), ("motorcycle", "bicycle")):
        shutil.copytree(train / source, out / target)
    return out


def reviewed(train: Path, out: Path, per_class: int = 10) -> Path:
    for name in ("bicycle", "motorcycle"):
        (out / name).mkdir(parents=True)
        for path in sorted((train / name).iterdir())[-per_class:]:
            shutil.copy2(path, out / name / path.name)
    (out / "neither").mkdir()
    shutil.copy2(next((train / "bicycle").iterdir()), out / "neither" / "odd.png")
    return out


def test_labels_are_split_and_neither_is_kept_out(staged: StagedDataset, tmp_path: Path) -> None:
    labels = reviewed(staged.split_dir("train"), tmp_path / "labels")
    counts = split_labels(labels, tmp_path / "train", tmp_path / "holdout")
    assert counts == {"train": 16, "holdout": 4, "test_images": 0, "neither": 1}
    assert not (tmp_path / "train" / "neither").exists()


@pytest.fixture
def registry() -> Iterator[BucketRegistry]:
    """The registry in a data bucket on moto's S3 over loopback."""
    from service.moto_adapters.server import start_moto_server

    with start_moto_server() as moto:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="data")
        yield BucketRegistry(s3, "data")


def test_a_worse_candidate_is_refused_and_a_better_one_promoted(
    staged: StagedDataset, small_model: Path, tmp_path: Path, registry: BucketRegistry
) -> None:
    from training.train import Hyperparameters

    store = ModelStore(tmp_path / "models")
    store.publish(small_model)
    serving = ModelMetadata.read(small_model).version
    hp = Hyperparameters(**SMALL_RECIPE)  # type: ignore[arg-type]
    labels = reviewed(staged.split_dir("train"), tmp_path / "labels")

    shuffled = retrain(
        base_train=swapped_classes(staged.split_dir("train"), tmp_path / "shuffled"),
        test_dir=staged.split_dir("test"),
        labels_dir=tmp_path / "no-labels",
        store=store,
        hyperparameters=hp,
        registry=registry,
    )
    assert shuffled is not None and not shuffled.promote
    assert shuffled.candidate["test"]["accuracy"] < shuffled.serving["test"]["accuracy"]
    assert store.current_version() == serving, "the serving model stays"
    assert "keep the serving model" in table(shuffled)

    statuses = {entry.version: entry.status for entry in registry.entries()}
    assert statuses == {serving: "serving", shuffled.candidate_version: "rejected"}
    rejected = registry.get(shuffled.candidate_version)
    assert rejected is not None and [change.status for change in rejected.history] == ["pending", "rejected"]
    assert "WORSE" in rejected.history[-1].reason
    assert rejected.training_data_sha256 != registry.get(serving).training_data_sha256  # type: ignore[union-attr]

    store.set_current(shuffled.candidate_version)  # a bad model is serving now (`scones models promote`)
    record_promotion(registry, shuffled.candidate_version, reason="by hand")
    with_labels = functools.partial(
        retrain,
        base_train=staged.split_dir("train"),
        test_dir=staged.split_dir("test"),
        labels_dir=labels,
        store=store,
        hyperparameters=hp,
    )
    better = with_labels(registry=registry)
    assert better is not None
    assert better.promote, table(better)
    assert store.current_version() == better.candidate_version
    assert better.labels == {"train": 16, "holdout": 4, "test_images": 0, "neither": 1}
    assert better.candidate["holdout"]["n"] == 4 and "PROMOTE" in table(better)
    statuses = {entry.version: entry.status for entry in registry.entries()}
    assert statuses == {
        serving: "retired",
        shuffled.candidate_version: "retired",
        better.candidate_version: "serving",
    }
    promoted = registry.get(better.candidate_version)
    assert promoted is not None
    assert [change.status for change in promoted.history] == ["pending", "approved", "serving"]
    assert promoted.metrics["test"]["accuracy"] == better.candidate["test"]["accuracy"]
    assert store.rollback() == shuffled.candidate_version, "and a promotion can be rolled back"
    again = with_labels(min_new_labels=1)
    assert again is None, "the same labels are not new: no model trained on them again"


def test_too_few_labels_do_nothing(staged: StagedDataset, small_model: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.publish(small_model)
    decision = retrain(
        base_train=staged.split_dir("train"),
        test_dir=staged.split_dir("test"),
        labels_dir=reviewed(staged.split_dir("train"), tmp_path / "labels"),
        store=store,
        min_new_labels=100,
    )
    assert decision is None and store.versions() == [ModelMetadata.read(small_model).version]


def test_reviewed_images_of_the_fixed_test_set_never_reach_training(
    staged: StagedDataset, tmp_path: Path
) -> None:
    import hashlib

    labels = tmp_path / "labels"
    shutil.copytree(staged.split_dir("test") / "bicycle", labels / "bicycle")  # the demo uploads test/ images
    test_hashes = frozenset(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in staged.split_dir("test").glob("*/*")
    )
    counts = split_labels(labels, tmp_path / "train", tmp_path / "holdout", exclude=test_hashes)
    assert counts == {"train": 0, "holdout": 0, "test_images": 100, "neither": 0}


def test_the_gate_refuses_a_candidate_that_accepts_far_less_or_nothing() -> None:
    """High accuracy among the few it accepts is no gain when most uploads go to people instead."""
    from training.retrain import gate

    serving = {"test": {"accuracy": 0.96, "coverage": 0.94, "accepted_accuracy": 0.97}}
    shy = {"test": {"accuracy": 0.96, "coverage": 0.30, "accepted_accuracy": 1.0}}
    silent = {"test": {"accuracy": 0.97, "coverage": 0.0, "accepted_accuracy": None}}
    better = {"test": {"accuracy": 0.97, "coverage": 0.95, "accepted_accuracy": 0.98}}
    assert gate(shy, serving, 0.0)[0] is False
    passed, reasons = gate(silent, serving, 0.0)
    assert passed is False and any("candidate has none" in reason for reason in reasons)
    assert gate(better, serving, 0.0)[0] is True
