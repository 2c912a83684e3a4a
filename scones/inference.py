"""Run an exported model with onnxruntime: bytes or model inputs in, probabilities in label order out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scones.model_metadata import ModelMetadata
from scones.preprocessing import preprocess


class OnnxClassifier:
    """A loaded model: its metadata, its preprocessing and an onnxruntime session. Thread-safe to call."""

    def __init__(self, model_dir: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort  # the serving extra; kept out of torch-free Lambda imports

        self.model_dir = model_dir
        self.metadata = ModelMetadata.read(model_dir)
        self.preprocess_config = self.metadata.preprocess_config()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(
            str(model_dir / self.metadata.onnx_file), options, providers=["CPUExecutionProvider"]
        )
        self._input_name: str = self._session.get_inputs()[0].name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def labels(self) -> list[str]:
        return self.metadata.label_order

    def predict_inputs(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities (N, classes) for a batch of preprocessed inputs (N, 3, S, S)."""
        outputs = self._session.run(None, {self._input_name: np.ascontiguousarray(inputs, np.float32)})
        probabilities: npt.NDArray[np.float32] = outputs[0]
        return probabilities

    def predict_images(self, images: Sequence[bytes]) -> npt.NDArray[np.float32]:
        """Probabilities for encoded images; raises ImageRejected for the first one that is not usable."""
        batch = np.stack([preprocess(data, self.preprocess_config) for data in images])
        return self.predict_inputs(batch)
