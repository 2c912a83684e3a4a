"""Train/serve agreement on the whole test split: what the endpoint serves is what torch measured.

`evaluation.json` holds the torch-side probabilities the training run computed for every test image.
The served answers (raw PNG bytes over HTTP, through the server's own preprocessing and onnxruntime)
must match them image by image: the same class everywhere and probabilities within 1e-4.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scones.inference import OnnxClassifier
from service.endpoint import LocalEndpoint
from training.staging import StagedDataset

pytestmark = pytest.mark.slow

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def torch_side(small_model: Path) -> dict[str, dict[str, Any]]:
    """The training run's test-split records, by `<class>/<file>` path."""
    records = json.loads((small_model / "evaluation.json").read_text())["test"]
    return {record["path"]: record for record in records}


@pytest.fixture(scope="module")
def test_images(staged: StagedDataset) -> dict[str, bytes]:
    """Every staged test image, by `<class>/<file>` path."""
    root = staged.split_dir("test")
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.glob("*/*.png"))}


def assert_agree(name: str, actual: dict[str, list[float]], expected: dict[str, dict[str, Any]]) -> None:
    assert actual.keys() == expected.keys()
    paths = sorted(actual)
    served = np.array([actual[p] for p in paths])
    reference = np.array([expected[p]["probabilities"] for p in paths])
    disagree = [p for p, a, b in zip(paths, served.argmax(1), reference.argmax(1), strict=True) if a != b]
    assert not disagree, f"{name}: {len(disagree)} images change class, e.g. {disagree[:5]}"
    worst = int(np.abs(served - reference).max(axis=1).argmax())
    gap = float(np.abs(served - reference).max())
    assert gap <= TOLERANCE, (
        f"{name}: {paths[worst]} differs by {gap:.2e}: {served[worst]} vs {reference[worst]}"
    )


def test_evaluation_covers_the_whole_test_split(
    torch_side: dict[str, dict[str, Any]], test_images: dict[str, bytes], staged: StagedDataset
) -> None:
    assert len(test_images) == sum(staged.counts["test"].values()) == 200
    assert torch_side.keys() == test_images.keys()
    for path, record in torch_side.items():
        assert ["bicycle", "motorcycle"][record["label"]] == path.split("/")[0]


def test_served_predictions_match_torch(
    endpoint: LocalEndpoint, torch_side: dict[str, dict[str, Any]], test_images: dict[str, bytes]
) -> None:
    served: dict[str, list[float]] = {}
    connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=30)
    try:
        for path, data in test_images.items():
            connection.request("POST", "/invocations", body=data, headers={"Content-Type": "image/png"})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (path, body)
            served[path] = json.loads(body)
    finally:
        connection.close()
    assert_agree("served", served, torch_side)


def test_onnx_classifier_matches_torch(
    small_model: Path, torch_side: dict[str, dict[str, Any]], test_images: dict[str, bytes]
) -> None:
    classifier = OnnxClassifier(small_model)
    paths = list(test_images)
    probabilities = np.concatenate(
        [
            classifier.predict_images([test_images[p] for p in paths[start : start + 64]])
            for start in range(0, len(paths), 64)
        ]
    )
    assert probabilities.shape == (len(paths), 2)
    assert_agree("onnx", {p: row.tolist() for p, row in zip(paths, probabilities, strict=True)}, torch_side)


def test_evaluation_reads_the_outputs_in_the_models_own_label_order(
    small_model: Path, staged: StagedDataset, tmp_path: Path
) -> None:
    """A model whose metadata lists its outputs the other way round is scored by that order: the same
    graph declared motorcycle-first is right exactly where it was wrong."""
    import shutil

    from scones.evaluation import evaluate_folder

    swapped = tmp_path / "swapped"
    shutil.copytree(small_model, swapped)
    metadata = json.loads((swapped / "metadata.json").read_text())
    metadata["label_order"] = list(reversed(metadata["label_order"]))
    (swapped / "metadata.json").write_text(json.dumps(metadata))
    folder = staged.split_dir("test")
    as_trained = evaluate_folder(folder, OnnxClassifier(small_model))
    as_declared = evaluate_folder(folder, OnnxClassifier(swapped))
    assert as_declared["accuracy"] == pytest.approx(1 - as_trained["accuracy"])
