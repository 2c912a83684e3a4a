"""Run the model server on a loopback port in a background thread: the local SageMaker endpoint."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from scones.data_capture import DataCapture
from scones.defaults import DEFAULT_ENDPOINT_NAME
from scones.faults import FaultSwitch
from scones.inference import OnnxClassifier
from scones.model_server import Endpoint, ModelSlot, create_app
from scones.model_store import ModelStore

_log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> str | None:
    """Why `port` on `host` cannot be listened on (e.g. "Address already in use"), or None if it can."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves do
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.strerror or str(error)
    return None


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
        follow = (store or ModelStore.default()).current_version if model_dir is None else None
        self.slot = ModelSlot(lambda: model_loader(model_dir, store, threads), current_version=follow)
        self.capture = capture
        self.faults = FaultSwitch()
        self._app = create_app({name: Endpoint(name, self.slot, capture)}, default=name, faults=self.faults)
        self._server, self._thread = self._new_server()

    def _new_server(self) -> tuple[uvicorn.Server, threading.Thread]:
        config = uvicorn.Config(
            self._app, host=self.host, port=self.port, log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        return server, threading.Thread(target=server.run, name=f"endpoint-{self.name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def serving(self) -> bool:
        return self._thread.is_alive() and self._server.started and not self._server.should_exit

    def start(self, timeout_s: float = 30.0) -> Self:
        self.slot.get()  # load the model before accepting traffic
        self.slot.follow()
        try:
            self._listen(timeout_s)
        except BaseException:
            self.slot.close()
            raise
        return self

    def _listen(self, timeout_s: float) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"model endpoint did not start on {self.url}")
            time.sleep(0.01)

    def _close(self) -> None:
        """Stop, and return only once stopped: uvicorn waits for open (keep-alive) connections and
        requests in flight before it exits, so after a grace period it is told not to wait."""
        self._server.should_exit = True
        if not self._thread.is_alive():  # never started, or stopped already
            return
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError(f"model endpoint on {self.url} did not stop")

    def go_down(self) -> None:
        """An outage: stop listening, so callers meet a refused connection (fault injection)."""
        self._close()

    def come_back(self, timeout_s: float = 30.0) -> None:
        """End an outage: listen again on the same port with the same model."""
        if self.serving:
            return
        self._close()  # one still shutting down must be gone first: a new server could not take the port
        self._server, self._thread = self._new_server()
        self._listen(timeout_s)

    def stop(self) -> None:
        """Stop serving (a server that will not stop is logged, not raised: the stack's own shutdown
        goes on) and flush the data capture."""
        try:
            self._close()
        except RuntimeError:
            _log.exception("stopping the model endpoint")
        finally:
            self.slot.close()
            if self.capture is not None:
                self.capture.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
