"""SageMaker training jobs that really train: the job's script-mode entry point run as a local process.

moto 5.2.5's CreateTrainingJob records the job as `Completed` at once and writes no model, so
nothing downstream (the artifact, the registry, the endpoint update) could be exercised. The
replacement does what SageMaker's training platform does for a script-mode job
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html),
on this machine instead of in a container:

1. the job is `InProgress` (secondary status `Training`) while it runs, on a background thread;
2. each input channel's S3 prefix is copied to `<work>/input/data/<channel>/` and
   `sagemaker_submit_directory` (`source.tar.gz`) is unpacked to `<work>/code/`;
3. `sagemaker_program` runs with this Python, the hyperparameters as `--name value` flags (the
   `sagemaker_*` ones left out) and `SM_CHANNEL_<NAME>`, `SM_MODEL_DIR`, `SM_OUTPUT_DATA_DIR`;
4. on exit 0 the model folder is packed as `model.tar.gz` at the job's `ModelArtifacts` and the job is
   `Completed`; otherwise `Failed` with the end of stderr as `FailureReason`; past its
   `MaxRuntimeInSeconds` it is killed and `Stopped` (`MaxRuntimeExceeded`), as SageMaker does.

Stopping the stack (`uninstall`) stops running jobs (`Stopped`) instead of waiting up to their
maximum runtime.

The training image is not run (no Docker here): the entry point runs with this interpreter's
packages, which `make test` installs with the `train` extra.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.moto_adapters._patching import PatchSet
from service.sagemaker_jobs import split_s3_url

MOTO_VERSION = "5.2.5"

_patches = PatchSet("sagemaker_training")
_STOP_WAIT_S = 30.0


@dataclass
class _Running:
    """One job's thread and process; `stop()` ends it as SageMaker's StopTrainingJob would."""

    thread: threading.Thread | None = None
    process: subprocess.Popen[str] | None = None
    stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.stopped.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()


_lock = threading.Lock()
_running: list[_Running] = []


def _s3(account_id: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[account_id]["aws"]


def _download_prefix(account_id: str, url: str, target: Path) -> None:
    bucket_name, prefix = split_s3_url(url)
    bucket = _s3(account_id).get_bucket(bucket_name)
    for key in list(bucket.keys.keys()):
        if key.startswith(prefix) and not key.endswith("/"):
            path = target / key[len(prefix) :].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bucket.keys[key].value)


def run_training_job(account_id: str, job: Any, running: _Running | None = None) -> None:
    """Run one job to its end; the outcome is written on the job (status, failure reason, artifact)."""
    running = running or _Running()
    from moto.core.utils import utcnow

    with tempfile.TemporaryDirectory(prefix=f"sagemaker-{job.training_job_name}-") as scratch:
        work = Path(scratch)
        try:
            environment = dict(os.environ)
            for channel in job.input_data_config:
                name = channel["ChannelName"]
                folder = work / "input" / "data" / name
                folder.mkdir(parents=True)
                _download_prefix(account_id, channel["DataSource"]["S3DataSource"]["S3Uri"], folder)
                environment[f"SM_CHANNEL_{name.upper()}"] = str(folder)
            parameters = job.hyper_parameters
            bucket_name, key = split_s3_url(parameters["sagemaker_submit_directory"])
            source = _s3(account_id).get_object(bucket_name, key).value
            with tarfile.open(fileobj=io.BytesIO(source), mode="r:gz") as archive:
                archive.extractall(work / "code", filter="data")
            for folder in ("model", "output"):  # SageMaker creates /opt/ml/model and output beforehand
                (work / folder).mkdir()
            environment |= {"SM_MODEL_DIR": str(work / "model"), "SM_OUTPUT_DATA_DIR": str(work / "output")}
            flags = [
                item
                for name, value in parameters.items()
                if not name.startswith("sagemaker_")
                for item in (f"--{name}", str(value))
            ]
            with _lock:
                if running.stopped.is_set():
                    raise _Stopped("Stopped", "the local stack stopped")
                running.process = subprocess.Popen(
                    [sys.executable, parameters["sagemaker_program"], *flags],
                    cwd=work / "code",
                    env=environment,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            try:
                _, stderr = running.process.communicate(
                    timeout=job.stopping_condition.get("MaxRuntimeInSeconds", 3600)
                )
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.communicate()
                raise _Stopped("MaxRuntimeExceeded", "MaxRuntimeExceeded") from None
            if running.process.returncode != 0:
                if running.stopped.is_set():  # terminated by the stop, not failed
                    raise _Stopped("Stopped", "the local stack stopped")
                raise RuntimeError(f"exit {running.process.returncode}: {stderr[-900:]}")
            packed = io.BytesIO()
            with tarfile.open(fileobj=packed, mode="w:gz") as archive:
                for path in sorted((work / "model").iterdir()):
                    archive.add(path, arcname=path.name)
            bucket_name, key = split_s3_url(job.model_artifacts["S3ModelArtifacts"])
            _s3(account_id).put_object(bucket_name, key, packed.getvalue())
            job.training_job_status = job.secondary_status = "Completed"
        except _Stopped as stop:
            job.training_job_status, job.secondary_status = "Stopped", stop.secondary_status
            job.failure_reason = stop.reason
        except Exception as error:  # the job fails, as SageMaker reports a failed container
            job.training_job_status = job.secondary_status = "Failed"
            job.failure_reason = f"AlgorithmError: {error}"[:1024]
        job.training_end_time = job.last_modified_time = utcnow()


def install() -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    uninstall()  # a second install must not wrap twice (two runners per job)
    original = SageMakerModelBackend.create_training_job

    def create_training_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = original(self, *args, **kwargs)
        job.training_job_status, job.secondary_status = "InProgress", "Training"
        running = _Running()
        running.thread = threading.Thread(
            target=run_training_job,
            args=(self.account_id, job, running),
            name=f"training-{job.training_job_name}",
        )
        with _lock:
            _running[:] = [other for other in _running if other.thread is None or other.thread.is_alive()]
            _running.append(running)
        running.thread.start()
        return job

    _patches.replace(SageMakerModelBackend, "create_training_job", create_training_job)


def uninstall() -> None:
    """Restore moto; stop the jobs still running and wait (a bounded time) for them to record it."""
    _patches.restore()
    with _lock:
        running, _running[:] = list(_running), []
        for job in running:
            job.stop()
    for job in running:
        if job.thread is not None:
            job.thread.join(_STOP_WAIT_S)


class _Stopped(Exception):
    """The job was stopped: by the stack stopping, or past its maximum runtime."""

    def __init__(self, secondary_status: str, reason: str) -> None:
        super().__init__(reason)
        self.secondary_status, self.reason = secondary_status, reason


def installed() -> bool:
    return _patches.active
