"""Training end to end on a tiny real subset: the SageMaker contract, the artifact, the metadata."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from scones.inference import OnnxClassifier
from scones.labels import LABELS
from scones.model_metadata import ModelMetadata, file_sha256
from training.staging import StagedDataset

REPO = Path(__file__).resolve().parents[2]


def test_sagemaker_entry_point_reads_the_sm_environment(staged: StagedDataset, tmp_path: Path) -> None:
    """`python training/train.py` as SageMaker runs it: channels and model dir from SM_* variables."""
    model_dir = tmp_path / "opt-ml-model"
    environment = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(staged.split_dir("train")),
        "SM_CHANNEL_TEST": str(staged.split_dir("test")),
        "SM_MODEL_DIR": str(model_dir),
    }
    hyperparameters = [
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--limit-per-class",
        "8",
        "--ema-decay",
        "0",
        "--no-progress",
    ]
    completed = subprocess.run(
        [sys.executable, str(REPO / "training" / "train.py"), *hyperparameters],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    metadata = ModelMetadata.read(model_dir)
    assert printed["version"] == metadata.version
    assert metadata.hyperparameters["epochs"] == 1
    assert metadata.metrics["test"]["n"] == 200, "the whole test split is always evaluated"
    assert metadata.metrics["n_train"] == 14, "8 per class, minus the stratified validation share"
    # the log lines the training job's metric definitions read (SageMaker scans the job's output)
    from service.sagemaker_jobs import SageMakerSettings, training_job_request

    request = training_job_request(
        SageMakerSettings(role_arn="r", bucket="b"), "job", "s3://b/src.tar.gz", {}
    )
    checked = []
    for definition in request["AlgorithmSpecification"]["MetricDefinitions"]:
        found = re.findall(definition["Regex"], completed.stderr)
        split, _, metric = definition["Name"].partition(":")
        expected = metadata.metrics[split][metric]
        if expected is None:  # e.g. no image accepted by this tiny model: no accepted accuracy
            continue
        checked.append(definition["Name"])
        assert len(found) == 1, f"{definition['Name']}: one value, the model's, expected; found {found}"
        assert abs(float(found[0]) - expected) < 1e-3, (definition["Name"], found, expected)
    assert {"validation:accuracy", "test:accuracy", "test:ece"} <= set(checked)


def test_artifact_metadata_describes_the_model(
    small_model: Path, small_model_metadata: ModelMetadata
) -> None:
    metadata = small_model_metadata
    assert metadata.label_order == list(LABELS)
    assert metadata.input_size == 64
    assert metadata.mean == (0.5, 0.5, 0.5) and metadata.std == (0.5, 0.5, 0.5)
    assert 0.05 <= metadata.temperature <= 20
    assert metadata.onnx_sha256 == file_sha256(small_model / "model.onnx")
    assert metadata.version.endswith(metadata.onnx_sha256[:8])
    assert len(metadata.training_data_sha256) == 64
    import PIL
    import torch

    assert metadata.training_environment["pillow"] == PIL.__version__
    assert metadata.training_environment["torch"] == torch.__version__
    for split in ("validation", "test"):
        report = metadata.metrics[split]
        assert {"n", "accuracy", "coverage", "accepted_accuracy", "ece", "confusion"} <= report.keys()
    assert metadata.metrics["test"]["accuracy"] > 0.5, "even two quick epochs learn something"


def test_training_is_reproducible_for_a_seed(staged: StagedDataset, tmp_path: Path) -> None:
    from training.train import Hyperparameters, train

    hp = Hyperparameters(image_size=32, epochs=1, limit_per_class=6, seeds="3", threads=1)
    first = train(staged.split_dir("train"), tmp_path / "a", hp, progress=False)
    second = train(staged.split_dir("train"), tmp_path / "b", hp, progress=False)
    assert first.training_data_sha256 == second.training_data_sha256
    assert first.temperature == second.temperature
    probabilities = [
        OnnxClassifier(tmp_path / name).predict_images(
            [(staged.split_dir("test") / "bicycle").iterdir().__next__().read_bytes()]
        )
        for name in ("a", "b")
    ]
    np.testing.assert_allclose(probabilities[0], probabilities[1], atol=1e-6)
