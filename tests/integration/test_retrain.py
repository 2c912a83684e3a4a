"""training/retrain.py on small real subsets: a candidate trained on shuffled labels is refused, a sound one
replacing a bad serving model is promoted, and the reviewed labels are split between training and hold-out."""

from __future__ import annotations

import dataclasses
import functools
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from scones.model_metadata import ModelMetadata
from scones.model_store import ModelStore
from scones.registry import BucketRegistry, entry_from, record_promotion
from tests.conftest import SMALL_RECIPE
from training.retrain import HeldOutMismatch, check_held_out, image_hashes, retrain, split_labels, table
from training.staging import StagedDataset


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
    assert counts["train"] + counts["holdout"] == 20 and counts["holdout"] >= 1, counts
    assert {"test_images": 0, "unreadable": 0, "neither": 1}.items() <= counts.items()
    for part in ("train", "holdout"):
        assert len(list((tmp_path / part).glob("*/*"))) == counts[part]
    assert not (tmp_path / "train" / "neither").exists()


def test_a_label_keeps_its_part_as_labels_accumulate(staged: StagedDataset, tmp_path: Path) -> None:
    """The hold-out follows each image's fingerprint, not its place in the list: a later candidate is
    never judged on an image an earlier one trained on."""
    first = reviewed(staged.split_dir("train"), tmp_path / "first", per_class=10)
    later = reviewed(staged.split_dir("train"), tmp_path / "later", per_class=40)  # 30 more per class
    split_labels(first, tmp_path / "t1", tmp_path / "h1")
    split_labels(later, tmp_path / "t2", tmp_path / "h2")
    held_out_then = {p.name for p in (tmp_path / "h1").glob("*/*")}
    trained_then = {p.name for p in (tmp_path / "t1").glob("*/*")}
    assert held_out_then and trained_then
    assert held_out_then <= {p.name for p in (tmp_path / "h2").glob("*/*")}
    assert trained_then <= {p.name for p in (tmp_path / "t2").glob("*/*")}


def test_labels_that_are_no_image_are_counted_and_an_image_without_suffix_is_kept(
    staged: StagedDataset, tmp_path: Path
) -> None:
    """Review keeps the upload's key name, which may have no suffix: the image still trains."""
    labels = tmp_path / "labels"
    (labels / "bicycle").mkdir(parents=True)
    source = sorted((staged.split_dir("train") / "bicycle").iterdir())[:6]
    for n, path in enumerate(source):
        shutil.copy2(path, labels / "bicycle" / f"IMG_{n:04d}")  # a phone's name, no suffix
    (labels / "bicycle" / "notes.txt").write_text("not an image")
    counts = split_labels(labels, tmp_path / "train", tmp_path / "holdout")
    assert counts["unreadable"] == 1 and counts["train"] + counts["holdout"] == 6
    copied = sorted(p.name for p in (tmp_path / "train").glob("*/*")) + sorted(
        p.name for p in (tmp_path / "holdout").glob("*/*")
    )
    assert len(copied) == 6 and all(name.endswith(".png") for name in copied)


@pytest.fixture
def registry() -> Iterator[BucketRegistry]:
    """The registry in a data bucket on moto's S3 over loopback."""
    from service.moto_adapters.server import start_moto_server

    with start_moto_server() as moto:
        s3 = moto.client("s3")
        bucket = f"data-{uuid.uuid4().hex[:8]}"  # moto's backends outlive the server: a registry of its own
        s3.create_bucket(Bucket=bucket)
        yield BucketRegistry(s3, bucket)


def test_a_worse_candidate_is_refused_and_a_better_one_promoted(
    staged: StagedDataset, small_model: Path, tmp_path: Path, registry: BucketRegistry
) -> None:
    from training.train import Hyperparameters

    store = ModelStore(tmp_path / "models")
    store.publish(small_model)
    serving = ModelMetadata.read(small_model).version
    hp = Hyperparameters(**SMALL_RECIPE)  # type: ignore[arg-type]
    labels = reviewed(staged.split_dir("train"), tmp_path / "labels")

    shuffled = retrain(  # a recipe that cannot learn: the fresh head stays at its random start
        base_train=staged.split_dir("train"),
        test_dir=staged.split_dir("test"),
        labels_dir=tmp_path / "no-labels",
        store=store,
        hyperparameters=dataclasses.replace(hp, lr=1e-12, epochs=1),
        registry=registry,
    )
    assert shuffled is not None and not shuffled.promote
    assert shuffled.candidate["gate"]["accuracy"] < shuffled.serving["gate"]["accuracy"]
    assert store.current_version() == serving, "the serving model stays"
    assert "keep the serving model" in table(shuffled)

    statuses = {entry.version: entry.status for entry in registry.entries()}
    assert statuses == {serving: "serving", shuffled.candidate_version: "rejected"}
    rejected = registry.get(shuffled.candidate_version)
    assert rejected is not None and [change.status for change in rejected.history] == ["pending", "rejected"]
    assert "WORSE" in rejected.history[-1].reason
    # the same images as the serving model's (train/, no labels), carved in two and passed apart
    assert rejected.training_data_sha256 == registry.get(serving).training_data_sha256  # type: ignore[union-attr]

    store.set_current(shuffled.candidate_version)  # a bad model is serving now (`scones models promote`)
    record_promotion(registry, shuffled.candidate_version, reason="by hand")
    with_labels = functools.partial(
        retrain,
        base_train=staged.split_dir("train"),
        test_dir=staged.split_dir("test"),
        labels_dir=labels,
        store=store,
        hyperparameters=dataclasses.replace(hp, split_seed=99),  # another carve: not the one used
    )
    better = with_labels(registry=registry)
    assert better is not None
    assert better.promote, table(better)
    assert store.current_version() == better.candidate_version
    held_out = better.labels["holdout"]
    assert better.labels["train"] + held_out == 20 and better.labels["neither"] == 1
    assert better.candidate["holdout"]["n"] == held_out and "PROMOTE" in table(better)
    # judged on the 16 images the serving model's validation carve held out (40 per class x 0.2)
    # and the held-out labels: images neither model trained on
    assert better.candidate["gate"]["n"] == better.serving["gate"]["n"] == 16 + held_out
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
    # validated on the serving model's carve, whatever the recipe asked: its metadata says so, and the
    # next retrain rebuilds the same carve
    first, promoted_metadata = ModelMetadata.read(small_model), ModelMetadata.read(store.current_path())
    assert promoted_metadata.hyperparameters["split_seed"] == first.hyperparameters["split_seed"] != 99
    assert promoted_metadata.hyperparameters["limit_per_class"] == first.hyperparameters["limit_per_class"]
    assert promoted_metadata.validation_data_sha256 == first.validation_data_sha256 != ""
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
    labels = tmp_path / "labels"
    shutil.copytree(staged.split_dir("test") / "bicycle", labels / "bicycle")  # the demo uploads test/ images
    for path in list(labels.glob("bicycle/*"))[:50]:  # re-encoded: other bytes, the same picture
        with Image.open(path) as image:
            image.convert("RGB").save(path.with_suffix(".bmp"))
        path.unlink()
    test_images = frozenset(image_hashes(staged.split_dir("test")))
    counts = split_labels(labels, tmp_path / "train", tmp_path / "holdout", exclude=test_images)
    assert counts == {"train": 0, "holdout": 0, "test_images": 100, "unreadable": 0, "neither": 0}


def test_the_gate_refuses_a_candidate_that_accepts_far_less_or_nothing() -> None:
    """High accuracy among the few it accepts is no gain when most uploads go to people instead."""
    from training.retrain import gate

    serving = {"gate": {"accuracy": 0.96, "coverage": 0.94, "accepted_accuracy": 0.97}}
    shy = {"gate": {"accuracy": 0.96, "coverage": 0.30, "accepted_accuracy": 1.0}}
    silent = {"gate": {"accuracy": 0.97, "coverage": 0.0, "accepted_accuracy": None}}
    better = {"gate": {"accuracy": 0.97, "coverage": 0.95, "accepted_accuracy": 0.98}}
    assert gate(shy, serving, 0.0)[0] is False
    passed, reasons = gate(silent, serving, 0.0)
    assert passed is False and any("candidate has none" in reason for reason in reasons)
    assert gate(better, serving, 0.0)[0] is True
    counted = {"gate": {"n": 104, "accuracy": 101 / 104, "coverage": 90 / 104, "accepted_accuracy": 89 / 90}}
    held = {"gate": {"n": 104, "accuracy": 101 / 104, "coverage": 92 / 104, "accepted_accuracy": 91 / 92}}
    passed, reasons = gate(counted, held, 0.0)
    assert (
        not passed and "coverage: candidate 0.8654 (90/104) vs serving 0.8846 (92/104) (WORSE)" in reasons[1]
    )
    assert "(89/90) vs serving 0.9891 (91/92)" in reasons[2], "the images behind each rate"


def test_a_carve_that_is_not_the_serving_models_validation_set_is_refused(
    staged: StagedDataset, small_model: Path, tmp_path: Path
) -> None:
    """train/ changed since the serving model was trained: the rebuilt carve holds other images, and a
    gate on it could judge the serving model on images it trained on."""
    from training.train import carve_folder

    serving = ModelMetadata.read(small_model)
    held = {
        "fraction": serving.hyperparameters["val_fraction"],
        "seed": serving.hyperparameters["split_seed"],
    }
    limit = serving.hyperparameters["limit_per_class"] or None
    carve_folder(
        staged.split_dir("train"), tmp_path / "fit", tmp_path / "same", **held, limit_per_class=limit
    )
    check_held_out(serving, tmp_path / "same")  # the very set: accepted
    carve_folder(
        staged.split_dir("train"),
        tmp_path / "fit2",
        tmp_path / "other",
        fraction=held["fraction"],
        seed=7,
        limit_per_class=limit,
    )
    with pytest.raises(HeldOutMismatch, match="not the one model"):
        check_held_out(serving, tmp_path / "other")


def test_a_candidate_is_not_promoted_over_a_model_served_since_training_began(
    staged: StagedDataset, small_model: Path, tmp_path: Path
) -> None:
    """`scones models promote` (or a rollback) during training: the candidate was compared with the
    model served before, not with this one, so it is kept but not made current."""
    from training.train import Hyperparameters, train

    store = ModelStore(tmp_path / "models")
    store.publish(small_model)
    other = tmp_path / "other"
    shutil.copytree(small_model, other)
    metadata = ModelMetadata.read(other)
    metadata.model_copy(update={"version": metadata.version + "-other"}).write(other)
    store.publish(other, make_current=False)

    def promoted_meanwhile(*args: Any, **kwargs: Any) -> ModelMetadata:
        store.set_current(metadata.version + "-other")
        return train(*args, **kwargs)

    decision = retrain(
        base_train=staged.split_dir("train"),
        test_dir=staged.split_dir("test"),
        labels_dir=reviewed(staged.split_dir("train"), tmp_path / "labels"),
        store=store,
        hyperparameters=Hyperparameters(**SMALL_RECIPE),  # type: ignore[arg-type]
        trainer=promoted_meanwhile,
        tolerance=1.0,  # the gate passes whatever the candidate: only the change of model holds it back
    )
    assert decision is not None and decision.passed and not decision.promote
    assert "changed during training" in decision.reasons[-1]
    assert store.current_version() == metadata.version + "-other"
    assert decision.candidate_version in store.versions(), "kept for a later promote"


def test_the_verdict_is_recorded_before_a_promotion_that_fails_and_the_baseline_is_what_serves(
    staged: StagedDataset, small_model: Path, tmp_path: Path, registry: BucketRegistry
) -> None:
    """The registry says one model serves, but another was put back by hand (a rollback it did not
    see): that one is the baseline and is marked serving. The endpoint update then fails (injected):
    the candidate stays approved with the reason, and the error reaches the caller."""
    from training.train import Hyperparameters

    store = ModelStore(tmp_path / "models")
    store.publish(small_model)
    first = ModelMetadata.read(small_model)
    registry.register(entry_from(first).model_copy(update={"status": "serving"}), reason="deployed")
    other = tmp_path / "other"
    shutil.copytree(small_model, other)
    first.model_copy(update={"version": first.version + "-other"}).write(other)
    store.publish(other)  # current now; the registry was not told

    def update_fails(candidate_dir: Path, metadata: ModelMetadata) -> None:
        raise RuntimeError("endpoint update rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        retrain(
            base_train=staged.split_dir("train"),
            test_dir=staged.split_dir("test"),
            labels_dir=reviewed(staged.split_dir("train"), tmp_path / "labels"),
            store=store,
            hyperparameters=Hyperparameters(**SMALL_RECIPE),  # type: ignore[arg-type]
            tolerance=1.0,
            registry=registry,
            promote_model=update_fails,
        )
    entries = {entry.version: entry for entry in registry.entries()}
    candidate = next(entry for version, entry in entries.items() if version not in store.current_version())
    assert {version: entry.status for version, entry in entries.items()} == {
        first.version: "retired",
        first.version + "-other": "serving",
        candidate.version: "approved",
    }
    assert [change.status for change in candidate.history] == ["pending", "approved", "approved"]
    assert candidate.history[-1].reason == "promotion failed: endpoint update rolled back"
    assert store.current_version() == first.version + "-other"
