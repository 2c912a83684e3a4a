"""Two local stacks on one data folder would overwrite each other's snapshot: the second must not start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
