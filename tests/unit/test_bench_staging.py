"""The benchmarks' staging helper: where the data comes from, and one clear line when it cannot."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def staged_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("staged_data", BENCH / "staged_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_given_source_wins_over_the_environment(
    staged_data: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCONES_DATASET", "/from/environment")
    assert staged_data.dataset_source("/given") == "/given"
    assert staged_data.dataset_source(None) == "/from/environment"


def test_without_a_source_the_shared_copy_else_the_official_archive(
    staged_data: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SCONES_DATASET", raising=False)
    monkeypatch.setattr(staged_data, "SHARED_DATASET", tmp_path)
    assert staged_data.dataset_source(None) is None  # no train.lst: stage() downloads the archive
    (tmp_path / "train.lst").write_text("")
    assert staged_data.dataset_source(None) == str(tmp_path)


def test_a_source_that_cannot_be_staged_exits_with_one_line(staged_data: ModuleType, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(SystemExit) as exited:
        staged_data.staged(str(missing), tmp_path / "out")
    message = str(exited.value.code)
    assert message.startswith("cannot stage the dataset: ")
    assert str(missing) in message and "--dataset" in message and "\n" not in message


def test_the_test_split_is_read_from_the_real_dataset(
    staged_data: ModuleType, dataset_source: Path, tmp_path: Path
) -> None:
    images = staged_data.test_images(str(dataset_source), tmp_path)
    assert len(images) == 200
    assert all(image.startswith(b"\x89PNG") for image in images)
