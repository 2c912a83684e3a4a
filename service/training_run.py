"""`scones train` on the local engine: stage the data, run training/train.py, publish the model it made."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from scones.model_metadata import ModelMetadata
from scones.model_store import ModelStore, default_home

if TYPE_CHECKING:
    from training.train import Hyperparameters

logger = logging.getLogger(__name__)


def train_and_publish(
    *,
    dataset: str | None = None,
    store: ModelStore,
    data_dir: Path | None = None,
    progress: bool = True,
    hyperparameters: Hyperparameters | None = None,
) -> ModelMetadata:
    """Stage, train (with the recipe's defaults unless overridden), export, publish and make it current."""
    from training.staging import stage_or_reuse
    from training.train import Hyperparameters, train

    started = time.perf_counter()
    staged = stage_or_reuse(dataset, data_dir or default_home() / "data", cache_dir=default_home() / "cache")
    hp = hyperparameters or Hyperparameters()
    with tempfile.TemporaryDirectory(prefix="scones-model-") as output:
        model_dir = Path(output)
        metadata = train(
            staged.split_dir("train"), model_dir, hp, test_dir=staged.split_dir("test"), progress=progress
        )
        total = round(time.perf_counter() - started, 1)
        metadata = metadata.model_copy(
            update={"metrics": {**metadata.metrics, "wall_seconds_with_staging": total}}
        )
        metadata.write(model_dir)
        store.publish(model_dir)
    logger.info("published model %s in %.1f s", metadata.version, total)
    return metadata
