"""Shared fixtures: the real CIFAR-100 subset, a small model really trained on it, and a live endpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from scones.model_metadata import ModelMetadata
from scones.model_store import ModelStore
from service.endpoint import LocalEndpoint
from training.staging import StagedDataset

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASET = REPO.parent / "shared" / "datasets" / "cifar100-bicycle-motorcycle"

# A quick but real training run: enough to separate the classes a little, seconds on two cores.
SMALL_RECIPE: dict[str, object] = {
    "image_size": 64,
    "epochs": 2,
    "limit_per_class": 40,
    "val_fraction": 0.2,
    "seeds": "0",
    "ema_decay": 0.0,  # a handful of steps: averaging would keep mostly the untrained head
}


@pytest.fixture(scope="session")
def dataset_source() -> Path:
    """The real CIFAR-100 bicycle/motorcycle images ($SCONES_DATASET or the shared copy).

    Without them most of the suite cannot run, and a run that skipped it must not pass: the tests
    that need them fail, unless SCONES_TESTS_WITHOUT_DATA=1 asks for the data-free tests only.
    """
    configured = os.environ.get("SCONES_DATASET")
    path = Path(configured) if configured else SHARED_DATASET
    if not (path / "train.lst").is_file():
        message = f"no dataset at {path}; set SCONES_DATASET to the shared CIFAR-100 copy"
        if os.environ.get("SCONES_TESTS_WITHOUT_DATA") == "1":
            pytest.skip(message)
        pytest.fail(message + " (or SCONES_TESTS_WITHOUT_DATA=1 to run only the tests that need none)")
    return path


@pytest.fixture(scope="session")
def staged(dataset_source: Path, tmp_path_factory: pytest.TempPathFactory) -> StagedDataset:
    from training.staging import stage

    return stage(dataset_source, tmp_path_factory.mktemp("staged"))


@pytest.fixture(scope="session")
def small_model(staged: StagedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder (model.onnx, metadata.json, evaluation.json) from a real, small training run."""
    from training.train import Hyperparameters, train

    model_dir = tmp_path_factory.mktemp("small-model")
    hp = Hyperparameters(**SMALL_RECIPE)  # type: ignore[arg-type]
    train(staged.split_dir("train"), model_dir, hp, test_dir=staged.split_dir("test"), progress=False)
    return model_dir


@pytest.fixture(scope="session")
def small_model_metadata(small_model: Path) -> ModelMetadata:
    return ModelMetadata.read(small_model)


@pytest.fixture(scope="session")
def model_store(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    store = ModelStore(tmp_path_factory.mktemp("store") / "models")
    store.publish(small_model)
    return store


@pytest.fixture(scope="session")
def endpoint(model_store: ModelStore) -> Iterator[LocalEndpoint]:
    """The model server on a free 127.0.0.1 port, serving the small model."""
    with LocalEndpoint(store=model_store) as running:
        yield running


@pytest.fixture(scope="session")
def moto_endpoint_url() -> Iterator[str]:
    """moto's real service implementations behind a server on a free 127.0.0.1 port."""
    from moto.server import ThreadedMotoServer

    from service.endpoint import free_port

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_client(service: str, endpoint_url: str) -> object:
    """A boto3 client for the local stack, with explicit dummy credentials (no environment swapping)."""
    import boto3

    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
