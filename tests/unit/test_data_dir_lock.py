"""Two local stacks on one data folder would overwrite each other's snapshot: the second must not start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scones.model_store import ModelStore
from service.local_stack import DataDirLock, LocalStack


def test_a_second_stack_on_a_data_folder_in_use_is_refused_until_the_first_stops(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path / "stack")
    with pytest.raises(RuntimeError, match=rf"in use by another local stack \(pid {os.getpid()}\)"):
        DataDirLock(tmp_path / "stack")
    first.release()
    DataDirLock(tmp_path / "stack").release()


def test_a_refused_stack_saves_nothing_over_the_running_ones_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    running = DataDirLock(data_dir)
    (data_dir / "snapshot").mkdir()
    (data_dir / "snapshot" / "index.json").write_text('{"objects": ["kept"]}')
    try:
        with pytest.raises(RuntimeError, match="in use"), LocalStack(data_dir=data_dir):
            pass
        assert (data_dir / "snapshot" / "index.json").read_text() == '{"objects": ["kept"]}'
    finally:
        running.release()


def test_a_snapshot_that_fails_to_restore_is_kept_not_saved_over(
    tmp_path: Path, model_store: ModelStore
) -> None:
    """A start that fails (or is interrupted) while restoring must not save its partial stack as the
    snapshot: the one good copy of the data would be replaced."""
    data_dir = tmp_path / "stack"
    (data_dir / "snapshot").mkdir(parents=True)
    index = '{"format": -1, "objects": [{"key": "inbox/only-copy.png"}]}'
    (data_dir / "snapshot" / "index.json").write_text(index)
    with (
        pytest.raises(RuntimeError, match="snapshot format -1"),
        LocalStack(store=model_store, data_dir=data_dir),
    ):
        pass
    assert (data_dir / "snapshot" / "index.json").read_text() == index


def test_the_demo_runs_on_a_temporary_stack_while_scones_up_holds_the_kept_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make demo` beside a running `scones up` (same home) is not refused after staging and
    training: it is told at once, and runs on a stack of its own."""
    from service.demo import kept_stack_folder

    monkeypatch.setenv("SCONES_HOME", str(tmp_path))
    assert kept_stack_folder() == tmp_path / "stack"
    running = DataDirLock(tmp_path / "stack")
    try:
        assert kept_stack_folder() is None
        assert "runs on a temporary stack" in capsys.readouterr().out
    finally:
        running.release()
    assert kept_stack_folder() == tmp_path / "stack"


def test_a_demo_whose_folder_was_taken_after_the_check_runs_on_a_temporary_stack(
    tmp_path: Path, model_store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `scones up` started while the demo staged and trained: the demo still runs, beside it."""
    from service.demo import demo_stack

    running = DataDirLock(tmp_path / "stack")
    try:
        with demo_stack(model_store, 0.85, tmp_path / "stack") as stack:
            assert stack.data_dir is None and stack.info is not None
        assert "runs on a temporary stack" in capsys.readouterr().out
    finally:
        running.release()
