"""The embedded local default: the whole stack on one machine, started by one call and shut down cleanly.

moto's `ThreadedMotoServer` on a free 127.0.0.1 port serves S3, EventBridge, Step Functions,
Lambda, SQS, CloudWatch and IAM, with the adapters of `service.moto_adapters` closing its gaps; the
model server runs beside it as the SageMaker endpoint. Resources are created from the same
definitions the AWS template uses (`service.provision`). boto3 and the AWS CLI reach it through
`AWS_ENDPOINT_URL`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import boto3
from botocore.config import Config

from scones.defaults import CONFIDENCE_THRESHOLD
from scones.model_store import ModelStore
from service.endpoint import LocalEndpoint
from service.provision import REGION, StackResources, provision
from workflow.names import FUNCTIONS, StackNames

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from service.moto_adapters.lambda_runtime import InProcessLambdaRuntime
    from service.persistence import SnapshotSummary

RECONCILE = next(spec for spec in FUNCTIONS if spec.logical_id == "ReconcileFunction")


def handler_factory(handler: str) -> Any:
    """`handlers.serialize.handler` → the module's `build(environment)`: one handler per function config."""
    module_name, _, _ = handler.rpartition(".")
    module = importlib.import_module(module_name)
    return module.build


@dataclass
class StackInfo:
    aws_endpoint_url: str
    model_endpoint_url: str
    resources: StackResources
    names: StackNames


class DataDirInUse(RuntimeError):
    """Another local stack holds the data folder."""

    def __init__(self, folder: Path, holder: str) -> None:
        super().__init__(
            f"{folder} is in use by another local stack ({holder}): stop it, or give another --data-dir"
        )
        self.folder, self.holder = folder, holder


class DataDirLock:
    """An exclusive lock on a stack's data folder for the life of the stack: two stacks saving to one
    folder would each overwrite the other's snapshot at their stop."""

    def __init__(self, data_dir: Path) -> None:
        import fcntl

        data_dir.mkdir(parents=True, exist_ok=True)
        self._file = (data_dir / ".lock").open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise DataDirInUse(data_dir, holder) from None
        self._file.truncate(0)
        self._file.write(f"pid {os.getpid()}")
        self._file.flush()

    def release(self) -> None:
        self._file.close()  # closing drops the lock


# moto's routine chatter, silenced while a stack runs (restored when it stops): every failed run's
# component tree (the failure record says it better). What it logs at ERROR elsewhere stays, such
# as "Stepfunctions computation ended with exception", the only trace of a States.Runtime failure.
QUIETED_MOTO_LOGS: dict[str, int] = {
    "moto": logging.ERROR,
    "moto.stepfunctions.parser.asl.component.eval_component": logging.CRITICAL,
}


def quiet_moto_logs() -> dict[str, int]:
    """Apply QUIETED_MOTO_LOGS; the levels they had, to restore."""
    previous = {name: logging.getLogger(name).level for name in QUIETED_MOTO_LOGS}
    for name, level in QUIETED_MOTO_LOGS.items():
        logging.getLogger(name).setLevel(level)
    return previous


class LocalStack:
    """Start with `with LocalStack() as stack:`; `stack.client("s3")` talks to it."""

    def __init__(
        self,
        *,
        store: ModelStore | None = None,
        model_dir: Path | None = None,
        names: StackNames | None = None,
        threshold: float = CONFIDENCE_THRESHOLD,
        endpoint_threads: int = 1,
        log_level: str = "WARNING",
        port: int = 0,
        data_dir: Path | None = None,
    ) -> None:
        """`data_dir`: keep the stack's data there across restarts (see `service.persistence`)."""
        self.names = names or StackNames()
        self.threshold = threshold
        self.log_level = log_level
        self._requested_port = port or None
        self.data_dir = data_dir
        self._lock: DataDirLock | None = None
        self._quieted: dict[str, int] = {}
        # a save must not replace the snapshot with a stack that a failed or interrupted start
        # restored only in part
        self._restored_whole = False
        self.restored: SnapshotSummary | None = None
        self.reconciled: dict[str, Any] | None = None
        self._endpoint = LocalEndpoint(
            name=self.names.endpoint, store=store, model_dir=model_dir, threads=endpoint_threads
        )
        self._server: Any = None
        self.info: StackInfo | None = None

    @property
    def aws_endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the local stack is not running")
        url: str = self._server.endpoint_url
        return url

    @property
    def resources(self) -> StackResources:
        if self.info is None:
            raise RuntimeError("the local stack is not running")
        return self.info.resources

    @property
    def endpoint(self) -> LocalEndpoint:
        """The model endpoint: its `faults` switch and `go_down()`/`come_back()` inject endpoint faults."""
        return self._endpoint

    @property
    def lambda_runtime(self) -> InProcessLambdaRuntime:
        """The functions' runtime: `fail_next(function_name)` makes a handler raise (fault injection)."""
        if self._server is None:
            raise RuntimeError("the local stack is not running")
        runtime: InProcessLambdaRuntime = self._server.adapters.runtime
        return runtime

    def client(self, service: str, **config: Any) -> Any:
        """A boto3 client for the running stack (dummy credentials, loopback only)."""
        session = boto3.session.Session(
            region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
        )
        return session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.aws_endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, **config),
        )

    def start(self) -> Self:
        from service.moto_adapters.server import start_moto_server

        if self.data_dir is not None:
            self._lock = DataDirLock(self.data_dir)  # before anything: a second stack must not start
        self._endpoint.start()
        factories: Mapping[str, Any] = {spec.handler: handler_factory(spec.handler) for spec in FUNCTIONS}
        self._server = start_moto_server(
            factories,
            sagemaker_endpoints={self.names.endpoint: self._endpoint.url},
            port=self._requested_port,
        )
        self._quieted = quiet_moto_logs()
        # moto's backends are process-wide: a stack starts empty, not with what an earlier stack of
        # this process left (then its snapshot, if it keeps one, is restored)
        self._server.reset()
        resources = provision(
            self.client,
            self.names,
            aws_endpoint_url=self.aws_endpoint_url,
            sagemaker_runtime_url=self._endpoint.url,
            threshold=self.threshold,
            log_level=self.log_level,
        )
        self.info = StackInfo(self.aws_endpoint_url, self._endpoint.url, resources, self.names)
        if self.data_dir is not None:
            from service.persistence import restore

            self.restored = restore(self.client, resources.bucket, self._queue_urls(), self.data_dir)
            self._restored_whole = True  # only now may a save replace the snapshot
            self.reconciled = self.reconcile()
        return self

    def _queue_urls(self) -> dict[str, str]:
        resources = self.resources
        return {
            self.names.review_queue: resources.review_queue_url,
            self.names.dead_letter_queue: resources.dead_letter_queue_url,
            self.names.event_dead_letter_queue: resources.event_dead_letter_queue_url,
        }

    def reconcile(self) -> dict[str, Any]:
        """Run the reconcile function now, for every upload (nothing is in flight when this runs)."""
        answer = self.client("lambda").invoke(
            FunctionName=self.names.function(RECONCILE), Payload=json.dumps({"min_age_s": 0})
        )
        result: dict[str, Any] = json.loads(answer["Payload"].read())
        if "FunctionError" in answer:
            raise RuntimeError(f"reconciling the inbox failed: {result}")
        return result

    def wait_quiet(self, timeout_s: float = 30.0) -> bool:
        """Wait until every event is delivered and no workflow run is RUNNING (what a test counts next
        is then its own); False at the timeout, a run still going left to the caller's checks."""
        from service.moto_adapters import current

        deadline = time.monotonic() + timeout_s
        installed = current()
        if installed is not None and not installed.delivery.wait_idle(timeout_s):
            return False
        sfn = self.client("stepfunctions")
        while True:
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=self.resources.state_machine_arn, statusFilter="RUNNING"
            )
            if not any(page["executions"] for page in pages):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def save(self) -> SnapshotSummary | None:
        """Write the stack's data to `data_dir` (also done by `stop()`)."""
        if self.data_dir is None or self.info is None:
            return None
        if not self._restored_whole:
            _log.warning(
                "not saving: the stack's data was not fully restored; %s keeps its snapshot", self.data_dir
            )
            return None
        from service.persistence import save

        return save(
            self.client,
            self.resources.bucket,
            self._queue_urls(),
            self.data_dir,
            review_queue=self.names.review_queue,
        )

    def stop(self) -> None:
        """Stop at once: runs in flight are cut off, and the next start of a kept stack re-drives them."""
        try:
            if self._server is not None and self.info is not None:
                self.save()
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None
            self._endpoint.stop()
            self.info = None
            self._restored_whole = False
            for logger, level in self._quieted.items():
                logging.getLogger(logger).setLevel(level)
            self._quieted = {}
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
