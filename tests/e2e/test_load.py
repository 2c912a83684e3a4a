"""A small load run in `make test`: 100 uploads with bad inputs, duplicate deliveries and an endpoint
outage, and the accounting holds (the full 1000-upload run is `bench/load.py`)."""

from __future__ import annotations

from scones.datasets import read_labeled_folder
from service.load_run import LoadPlan, run_load
from service.local_stack import LocalStack
from training.staging import StagedDataset


def test_every_upload_of_a_faulty_burst_ends_with_exactly_one_right_outcome(
    stack: LocalStack, staged: StagedDataset
) -> None:
    images = [image.data for image in read_labeled_folder(staged.split_dir("test"))]
    plan = LoadPlan(uploads=100, bad_share=0.15, duplicate_share=0.1, outage_s=3.0)
    result = run_load(stack, images, plan)
    assert result["uploads"] == 100
    assert result["accepted"] + result["review"] + result["failed"] == 100
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["wrong_outcomes"] == []
    assert result["bad_inputs"] > 0 and result["duplicate_deliveries"] > 0
    assert result["duplicate_deliveries_ignored"] == result["duplicate_deliveries"]
    assert result["failed"] == result["bad_inputs"], "after the replay only bad inputs have failed"
    assert result["endpoint_errors"] > 0, "the outage met classify calls (and they recovered)"
