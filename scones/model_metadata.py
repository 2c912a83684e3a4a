"""The metadata file that travels beside every exported model: what it is, how to feed it, how good it is."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from scones.labels import LABELS
from scones.preprocessing import PreprocessConfig

METADATA_FILE: Final = "metadata.json"
ONNX_FILE: Final = "model.onnx"


class ModelMetadata(BaseModel):
    """Everything a server needs to run a model the way it was trained, plus its measured quality."""

    model_config = ConfigDict(extra="allow", frozen=True)

    version: str
    label_order: list[str] = Field(default_factory=lambda: list(LABELS))
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    temperature: float = 1.0
    architecture: str
    onnx_file: str = ONNX_FILE
    onnx_sha256: str = ""
    training_data_sha256: str = ""
    # the images it was validated (and its temperature fitted) on: a retrain's gate must use the same
    validation_data_sha256: str = ""
    created_at: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    # package → version the model was trained with (Python, torch, Pillow, numpy, onnx)
    training_environment: dict[str, str] = Field(default_factory=dict)

    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing this model was trained on."""
        return PreprocessConfig(input_size=self.input_size, mean=self.mean, std=self.std)

    def write(self, model_dir: Path) -> Path:
        path = model_dir / METADATA_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, model_dir: Path) -> ModelMetadata:
        return cls.model_validate_json((model_dir / METADATA_FILE).read_text())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelFileMismatch(ValueError):
    """A model folder's ONNX file is not the one its metadata describes."""


def check_model_file(model_dir: Path) -> ModelMetadata:
    """The folder's metadata, once its ONNX file is checked against the SHA-256 the metadata records:
    a stale or swapped `model.onnx` would be served under another model's version and preprocessing."""
    metadata = ModelMetadata.read(model_dir)
    if metadata.onnx_sha256:
        found = file_sha256(model_dir / metadata.onnx_file)
        if found != metadata.onnx_sha256:
            raise ModelFileMismatch(
                f"{model_dir / metadata.onnx_file} has SHA-256 {found[:12]}..., but metadata.json of "
                f"version {metadata.version} describes {metadata.onnx_sha256[:12]}...: not served"
            )
    return metadata
