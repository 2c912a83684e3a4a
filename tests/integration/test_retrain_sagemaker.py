"""`training/retrain.py --on sagemaker` against moto over loopback: the merged data goes to S3, a SageMaker
training job really trains (the sagemaker_training adapter runs the packaged entry point), the candidate
is gated against the endpoint's model, registered in the Model Registry, and the endpoint is updated."""

from __future__ import annotations

import argparse
import io
import tarfile
import uuid
from pathlib import Path

from scones.model_metadata import ModelMetadata
from scones.model_store import ModelStore
from scones.registry import SageMakerRegistry, entry_from
from service.moto_adapters.server import start_moto_server
from service.sagemaker_jobs import SageMakerSettings, hosting_actions, run
from tests.conftest import SMALL_RECIPE
from tests.integration.test_retrain import reviewed
from training.retrain import retrain, sagemaker_engine, table
from training.staging import StagedDataset

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/scones-serve:1"


def packed(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def test_retrain_on_sagemaker_trains_registers_and_updates_the_endpoint(
    staged: StagedDataset, small_model: Path, tmp_path: Path
) -> None:
    from training.train import Hyperparameters

    with start_moto_server() as aws:
        s3, sagemaker = aws.client("s3"), aws.client("sagemaker")
        s3.create_bucket(Bucket="sm-data")
        serving_url = "s3://sm-data/models/first/output/model.tar.gz"
        s3.put_object(Bucket="sm-data", Key="models/first/output/model.tar.gz", Body=packed(small_model))
        serving = ModelMetadata.read(small_model)
        settings = SageMakerSettings(role_arn=ROLE, bucket="sm-data", serving_image=IMAGE)
        run(
            hosting_actions(sagemaker, settings, "scones-classifier", serving_url, serving.version),
            dry_run=False,
        )
        registry = SageMakerRegistry(sagemaker, "scones-classifier", serving_image=IMAGE)
        registry.register(
            entry_from(serving, model_data_url=serving_url).model_copy(update={"status": "serving"})
        )

        args = argparse.Namespace(
            role=ROLE,
            bucket="sm-data",
            region="us-east-1",
            serving_image=IMAGE,
            endpoint_name="scones-classifier",
            model_package_group="scones-classifier",
        )
        engine = sagemaker_engine(args, sagemaker, s3, tmp_path / "serving")
        engine["trainer"].poll_seconds = 1
        engine["trainer"].job_name = f"scones-retrain-{uuid.uuid4().hex[:8]}"  # moto's backends are shared
        assert engine["serving_dir"] is not None, "the endpoint's model, from the registry"
        decision = retrain(
            base_train=staged.split_dir("train"),
            test_dir=staged.split_dir("test"),
            labels_dir=reviewed(staged.split_dir("train"), tmp_path / "labels"),
            store=ModelStore(tmp_path / "models"),
            hyperparameters=Hyperparameters(**SMALL_RECIPE),  # type: ignore[arg-type]
            tolerance=1.0,  # the gate's logic is tested in test_retrain; here, the AWS plumbing
            **engine,
        )
        assert decision is not None and decision.promote, table(decision) if decision else ""
        assert decision.serving_version == serving.version

        jobs = sagemaker.list_training_jobs(NameContains=engine["trainer"].job_name)["TrainingJobSummaries"]
        assert len(jobs) == 1
        job = sagemaker.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        channels = {
            c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
        }
        train_prefix = channels["train"].removeprefix("s3://sm-data/")
        uploaded = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket="sm-data", Prefix=train_prefix, MaxKeys=2000)["Contents"]
        ]
        # the serving model's share of train/ (40 per class, less its 20 % validation carve) plus the
        # reviewed labels kept for training; the carve is the job's validation channel
        assert len(uploaded) == 64 + decision.labels["train"]
        assert any("/reviewed-" in key for key in uploaded)
        validation_prefix = channels["validation"].removeprefix("s3://sm-data/")
        held_out = s3.list_objects_v2(Bucket="sm-data", Prefix=validation_prefix)["KeyCount"]
        assert held_out == 16

        artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
        endpoint = sagemaker.describe_endpoint(EndpointName="scones-classifier")
        config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
        assert model["PrimaryContainer"]["ModelDataUrl"] == artifact, "the endpoint serves the candidate now"
        assert decision.candidate_version in model["ModelName"]

        statuses = {entry.version: (entry.status, entry.model_data_url) for entry in registry.entries()}
        assert statuses == {
            serving.version: ("retired", serving_url),
            decision.candidate_version: ("serving", artifact),
        }
