"""The local model store: publishing versions and switching the served one atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from scones.model_metadata import ModelFileMismatch, ModelMetadata, file_sha256
from scones.model_store import ModelStore, NoModelError


def write_model(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx bytes of " + version.encode())
    ModelMetadata(
        onnx_sha256=file_sha256(folder / "model.onnx"),
        version=version,
        input_size=96,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        architecture="test",
        created_at="2026-11-24T00:00:00+00:00",
    ).write(folder)
    return folder


def test_empty_store_has_no_current_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    assert store.versions() == []
    with pytest.raises(NoModelError, match="scones train"):
        store.current_path()


def test_publish_copies_the_folder_and_makes_it_current(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    published = store.publish(write_model(tmp_path / "out", "v1"))
    assert published == tmp_path / "models" / "v1"
    assert (published / "model.onnx").read_bytes() == b"onnx bytes of v1"
    assert store.current_version() == "v1"
    assert store.current_path() == published


def test_publish_without_switching_keeps_the_served_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.publish(write_model(tmp_path / "a", "v1"))
    store.publish(write_model(tmp_path / "b", "v2"), make_current=False)
    assert store.versions() == ["v1", "v2"]
    assert store.current_version() == "v1"
    store.set_current("v2")
    assert store.current_version() == "v2"
    assert not list(store.root.glob(".CURRENT*")), "no temporary pointer files are left behind"


def test_unknown_or_unsafe_versions_are_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(NoModelError):
        store.set_current("v9")
    for bad in ("", "../etc", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="not a model version"):
            store.path(bad)


def test_rollback_serves_the_previous_version_and_history_records_every_switch(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for version in ("v1", "v2", "v3"):
        store.publish(write_model(tmp_path / version, version))
    assert store.current_version() == "v3" and store.history() == ["v1", "v2", "v3"]
    assert store.rollback() == "v2" and store.current_version() == "v2"
    store.set_current("v2")  # serving it already: not a switch
    assert store.history() == ["v1", "v2", "v3", "v2"]


def test_rollbacks_step_back_through_the_promotions_and_a_promotion_after_them_counts(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for version in ("v1", "v2", "v3"):
        store.publish(write_model(tmp_path / version, version))
    assert store.rollback() == "v2"
    assert store.rollback() == "v1", "not back to v3: a rollback is not a promotion"
    with pytest.raises(NoModelError, match="no earlier"):
        store.rollback()
    store.set_current("v3")  # promoted again
    assert store.rollback() == "v1"
    assert ModelStore(tmp_path / "models").history() == ["v1", "v2", "v3", "v2", "v1", "v3", "v1"]


def test_rollback_with_nothing_earlier_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.publish(write_model(tmp_path / "v1", "v1"))
    with pytest.raises(NoModelError, match="no earlier"):
        store.rollback()


def test_a_model_whose_onnx_file_is_not_the_one_its_metadata_describes_is_not_published(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path / "models")
    swapped = write_model(tmp_path / "out", "v1")
    (swapped / "model.onnx").write_bytes(b"some other model")
    with pytest.raises(ModelFileMismatch, match="v1"):
        store.publish(swapped)
    assert store.versions() == [] and list((tmp_path / "models").iterdir()) == [], "nothing left behind"


def test_a_publish_in_progress_or_left_by_a_crash_is_no_version(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.publish(write_model(tmp_path / "out", "v1"))
    write_model(tmp_path / "models" / ".v2-k3j4", "v2")  # a copy a crash interrupted
    assert store.versions() == ["v1"]
