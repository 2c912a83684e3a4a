"""Run an exported model with onnxruntime: bytes or model inputs in, probabilities in label order out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scones.model_metadata import ModelMetadata, check_model_file
from scones.preprocessing import preprocess


def warn_if_preprocessing_differs(metadata: ModelMetadata) -> bool:
    """Log a warning (and say so) when this Pillow is not the one the model was trained with: its
    resampling computes the thumbnails, so predictions may differ slightly from the training-time ones."""
    import PIL

    trained_with = metadata.training_environment.get("pillow")
    if trained_with is None or trained_with == PIL.__version__:
        return False
    logging.getLogger(__name__).warning(
        "model %s was trained with Pillow %s, this is Pillow %s: preprocessing may differ slightly",
        metadata.version,
        trained_with,
        PIL.__version__,
    )
    return True


class OnnxClassifier:
    """A loaded model: its metadata, its preprocessing and an onnxruntime session. Thread-safe to call."""

    def __init__(self, model_dir: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort  # the serving extra; kept out of torch-free Lambda imports

        self.model_dir = model_dir
        self.metadata = check_model_file(model_dir)
        self.preprocess_config = self.metadata.preprocess_config()
        warn_if_preprocessing_differs(self.metadata)
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
