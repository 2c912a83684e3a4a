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
   `Completed`; otherwise `Failed` with the end of stderr as `FailureReason`.

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
from pathlib import Path
from typing import Any

from service.moto_adapters._patching import PatchSet
from service.sagemaker_jobs import split_s3_url

MOTO_VERSION = "5.2.5"

_patches = PatchSet("sagemaker_training")
_threads: list[threading.Thread] = []


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


def run_training_job(account_id: str, job: Any) -> None:
    """Run one job to its end; the outcome is written on the job (status, failure reason, artifact)."""
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
            completed = subprocess.run(
                [sys.executable, parameters["sagemaker_program"], *flags],
                cwd=work / "code",
                env=environment,
                capture_output=True,
                text=True,
                timeout=job.stopping_condition.get("MaxRuntimeInSeconds", 3600),
                check=False,
            )
            if completed.returncode != 0:
                raise RuntimeError(f"exit {completed.returncode}: {completed.stderr[-900:]}")
            packed = io.BytesIO()
            with tarfile.open(fileobj=packed, mode="w:gz") as archive:
                for path in sorted((work / "model").iterdir()):
                    archive.add(path, arcname=path.name)
            bucket_name, key = split_s3_url(job.model_artifacts["S3ModelArtifacts"])
            _s3(account_id).put_object(bucket_name, key, packed.getvalue())
            job.training_job_status = job.secondary_status = "Completed"
        except Exception as error:  # the job fails, as SageMaker reports a failed container
            job.training_job_status = job.secondary_status = "Failed"
            job.failure_reason = f"AlgorithmError: {error}"[:1024]
        job.training_end_time = job.last_modified_time = utcnow()


def install() -> None:
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.create_training_job

    def create_training_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = original(self, *args, **kwargs)
        job.training_job_status, job.secondary_status = "InProgress", "Training"
        thread = threading.Thread(
            target=run_training_job, args=(self.account_id, job), name=f"training-{job.training_job_name}"
        )
        _threads[:] = [running for running in _threads if running.is_alive()]
        _threads.append(thread)
        thread.start()
        return job

    _patches.replace(SageMakerModelBackend, "create_training_job", create_training_job)


def uninstall() -> None:
    _patches.restore()
    while _threads:  # finish running jobs rather than leave them half-written
        _threads.pop().join()


def installed() -> bool:
    return _patches.active
