"""The benchmarks' data: the dataset staged into a scratch folder, or one clear line saying why not.

The source is `--dataset`, else `$SCONES_DATASET`, else the shared copy beside the checkout, else the
official archive (which needs the internet).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from training.staging import StagedDataset, StagingError, stage

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASET = REPO.parent / "shared" / "datasets" / "cifar100-bicycle-motorcycle"


def dataset_source(given: str | None) -> str | None:
    """`given`, else $SCONES_DATASET, else the shared copy when present; None means the official archive."""
    if given:
        return given
    if configured := os.environ.get("SCONES_DATASET"):
        return configured
    return str(SHARED_DATASET) if (SHARED_DATASET / "train.lst").is_file() else None


def staged(given: str | None, out_dir: Path, *, cache_dir: Path | None = None) -> StagedDataset:
    """Stage the dataset into `out_dir`; exit with one line (no traceback) when it cannot be staged."""
    try:
        return stage(dataset_source(given), out_dir, cache_dir=cache_dir)
    except (StagingError, OSError) as error:
        sys.exit(f"cannot stage the dataset: {error} (pass --dataset DIR or set SCONES_DATASET)")


def test_images(given: str | None, scratch: Path) -> list[bytes]:
    """The encoded images of the staged `test/` split, in the split's order."""
    from scones.datasets import read_labeled_folder

    return [image.data for image in read_labeled_folder(staged(given, scratch).split_dir("test"))]
