"""Run the model server on a loopback port in a background thread: the local SageMaker endpoint."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from scones.data_capture import DataCapture
from scones.inference import OnnxClassifier
from scones.model_server import Endpoint, ModelSlot, create_app
from scones.model_store import ModelStore

DEFAULT_ENDPOINT_NAME = "scones-classifier"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def model_loader(model_dir: Path | None, store: ModelStore | None, threads: int) -> OnnxClassifier:
    """The model at `model_dir`, else the store's current one."""
    path = model_dir if model_dir is not None else (store or ModelStore.default()).current_path()
    return OnnxClassifier(path, threads=threads)


class LocalEndpoint:
    """A uvicorn server for one named endpoint; a context manager that starts and stops it cleanly."""

    def __init__(
        self,
        *,
        name: str = DEFAULT_ENDPOINT_NAME,
        model_dir: Path | None = None,
        store: ModelStore | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = 1,
        capture: DataCapture | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port or free_port(host)
        self.slot = ModelSlot(lambda: model_loader(model_dir, store, threads))
        self.capture = capture
        app = create_app({name: Endpoint(name, self.slot, capture)}, default=name)
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"endpoint-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> Self:
        self.slot.get()  # load the model before accepting traffic
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"model endpoint did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.capture is not None:
            self.capture.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
