"""SageMaker training, hosting and cleanup against moto's SageMaker, S3 and CloudFormation over loopback:
the requests our code sends are the ones AWS needs, re-running is safe, and `--dry-run` changes nothing."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.moto_adapters.server import LocalMotoServer, start_moto_server
from service.sagemaker_jobs import (
    ENTRY_POINT,
    SageMakerSettings,
    SageMakerTrainer,
    SettingsError,
    describe_endpoint,
    destroy_actions,
    endpoint_model_data_url,
    hosting_actions,
    hosting_like,
    hosting_requests,
    model_archive_members,
    run,
    sagemaker_hyperparameters,
    source_archive,
    train_actions,
    wait_until_serving,
)
from training.staging import StagedDataset

ROOT = Path(__file__).parents[2]
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/scones-serve:1"


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalMotoServer]:
    with start_moto_server() as server:
        server.client("s3").create_bucket(Bucket="sm-data")
        yield server


def settings(**overrides: Any) -> SageMakerSettings:
    return SageMakerSettings(**({"role_arn": ROLE, "bucket": "sm-data", "serving_image": IMAGE} | overrides))


def hosted(aws: LocalMotoServer) -> None:
    """The `scones-classifier` endpoint serving v1 (hosting is idempotent: a no-op if it already does)."""
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    run(
        hosting_actions(aws.client("sagemaker"), settings(), "scones-classifier", model_data, "v1"),
        dry_run=False,
    )


def test_the_source_archive_holds_the_entry_point_packages_and_requirements() -> None:
    with tarfile.open(fileobj=io.BytesIO(source_archive()), mode="r:gz") as archive:
        names = set(archive.getnames())
        entry = archive.extractfile(ENTRY_POINT)
        assert entry is not None and b"from training.train import main" in entry.read()
    assert {"requirements.txt", "training/train.py", "training/model.py", "scones/preprocessing.py"} <= names
    with tarfile.open(fileobj=io.BytesIO(source_archive()), mode="r:gz") as archive:
        requirements = archive.extractfile("requirements.txt")
        assert requirements is not None
        pinned = requirements.read().decode().split()
    import PIL

    assert f"pillow=={PIL.__version__}" in pinned, "the resampling code the served model's pixels come from"
    assert all("==" in requirement for requirement in pinned), pinned
    assert "onnx==1.17.0" in pinned, "of the container's torch's time: no numpy 2 or protobuf 6 under it"
    assert not any(name.startswith(("tests/", "service/", "handlers/")) for name in names)


def test_a_training_job_reads_the_bucket_channels_and_runs_train_py(aws: LocalMotoServer) -> None:
    sagemaker, s3 = aws.client("sagemaker"), aws.client("s3")
    run(
        train_actions(
            sagemaker, s3, settings(), sagemaker_hyperparameters({"epochs": 6, "flip_tta": True}), "scones-t1"
        ),
        dry_run=False,
    )
    job = sagemaker.describe_training_job(TrainingJobName="scones-t1")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels == {"train": "s3://sm-data/train/", "test": "s3://sm-data/test/"}
    assert job["HyperParameters"]["epochs"] == "6" and job["HyperParameters"]["flip-tta"] == "True"
    assert job["HyperParameters"]["sagemaker_program"] == ENTRY_POINT
    assert job["AlgorithmSpecification"]["TrainingImage"].startswith("763104351884.dkr.ecr.us-east-1")
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://sm-data/models/"
    source = s3.get_object(Bucket="sm-data", Key="code/scones-t1/source.tar.gz")["Body"].read()
    assert source[:2] == b"\x1f\x8b"


def names(settings: SageMakerSettings, endpoint: str, model_data: str, version: str) -> tuple[str, str]:
    """The model and endpoint config names hosting `version` with `settings` makes."""
    model, config = hosting_requests(settings, endpoint, model_data, version)
    return model["ModelName"], config["EndpointConfigName"]


def served_config(sagemaker: Any, endpoint: str) -> str:
    name: str = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    return name


def test_hosting_creates_a_captured_real_time_endpoint_or_a_serverless_one(aws: LocalMotoServer) -> None:
    sagemaker = aws.client("sagemaker")
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    run(hosting_actions(sagemaker, settings(), "scones-classifier", model_data, "v1"), dry_run=False)
    v1_model, v1_config = names(settings(), "scones-classifier", model_data, "v1")
    assert v1_model.startswith("scones-v1-") and v1_config.startswith("scones-v1-realtime-")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=v1_config)
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["DestinationS3Uri"] == "s3://sm-data/datacapture"
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    model = sagemaker.describe_model(ModelName=v1_model)
    assert (
        model["PrimaryContainer"]["Image"] == IMAGE
        and model["PrimaryContainer"]["ModelDataUrl"] == model_data
    )
    created = sagemaker.describe_endpoint(EndpointName="scones-classifier")
    # a promotion: the same endpoint updated in place (moto: the sagemaker_update_endpoint adapter)
    run(hosting_actions(sagemaker, settings(), "scones-classifier", model_data, "v2"), dry_run=False)
    endpoint = sagemaker.describe_endpoint(EndpointName="scones-classifier")
    assert endpoint["EndpointConfigName"] == names(settings(), "scones-classifier", model_data, "v2")[1]
    assert endpoint["EndpointArn"] == created["EndpointArn"] and endpoint["EndpointStatus"] == "InService"
    assert sagemaker.describe_endpoint_config(EndpointConfigName=v1_config), "the old config stays"
    with pytest.raises(sagemaker.exceptions.ClientError, match="Could not find endpoint configuration"):
        sagemaker.update_endpoint(EndpointName="scones-classifier", EndpointConfigName="no-such-config")

    # SageMaker cannot update a real-time endpoint to serverless: refused before anything is made
    models_before = len(sagemaker.list_models()["Models"])
    with pytest.raises(SettingsError, match="is real-time and SageMaker cannot update it to serverless"):
        hosting_actions(sagemaker, settings(serverless=True), "scones-classifier", model_data, "v3")
    assert len(sagemaker.list_models()["Models"]) == models_before
    run(
        hosting_actions(sagemaker, settings(serverless=True), "scones-classifier-sl", model_data, "v3"),
        dry_run=False,
    )
    serverless = sagemaker.describe_endpoint_config(
        EndpointConfigName=served_config(sagemaker, "scones-classifier-sl")
    )
    assert serverless["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
    }
    assert not serverless.get("DataCaptureConfig")


def test_hosting_names_keep_to_sagemakers_pattern_whatever_the_version() -> None:
    pattern = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    for version in ("v1.2", "my_model", "--x--", "é" * 3 + "1", "9" * 120):
        for name in names(settings(prefix="scones_dev"), "scones-classifier", "s3://b/m.tar.gz", version):
            assert pattern.match(name), (version, name)


def test_a_new_image_or_instance_count_makes_new_resources_and_a_promotion_keeps_the_count(
    aws: LocalMotoServer,
) -> None:
    """The same version deployed again with a fixed image is a new model (SageMaker's models cannot
    change); the endpoint's instance count carries over to the next promotion."""
    sagemaker = aws.client("sagemaker")
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    broken = settings(serving_image=IMAGE.replace(":1", ":broken"), instance_count=3)
    run(hosting_actions(sagemaker, broken, "scones-classifier-img", model_data, "i1"), dry_run=False)
    fixed = hosting_like(
        sagemaker, settings(serving_image=IMAGE.replace(":1", ":fixed")), "scones-classifier-img"
    )
    assert fixed.instance_count == 3, "the endpoint's instances, kept"
    run(hosting_actions(sagemaker, fixed, "scones-classifier-img", model_data, "i1"), dry_run=False)
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=served_config(sagemaker, "scones-classifier-img")
    )
    variant = config["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] == 3
    image = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["Image"]
    assert image.endswith(":fixed")


def test_a_promotion_keeps_the_endpoints_hosting_and_a_rollback_reuses_the_old_model(
    aws: LocalMotoServer,
) -> None:
    """Promoting onto a serverless endpoint stays serverless; re-serving an earlier version reuses its
    model and config (SageMaker refuses to create a model name twice) and waits for InService."""
    sagemaker = aws.client("sagemaker")
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    serverless = settings(serverless=True, serverless_memory_mb=3072)
    run(hosting_actions(sagemaker, serverless, "scones-classifier-kept", model_data, "k1"), dry_run=False)
    promoted = hosting_like(sagemaker, settings(), "scones-classifier-kept")
    assert promoted.serverless and promoted.serverless_memory_mb == 3072
    run(hosting_actions(sagemaker, promoted, "scones-classifier-kept", model_data, "k2"), dry_run=False)
    assert (
        served_config(sagemaker, "scones-classifier-kept")
        == names(promoted, "scones-classifier-kept", model_data, "k2")[1]
    )
    models = len(sagemaker.list_models()["Models"])
    run(
        hosting_actions(sagemaker, promoted, "scones-classifier-kept", model_data, "k1"), dry_run=False
    )  # back
    assert (
        served_config(sagemaker, "scones-classifier-kept")
        == names(serverless, "scones-classifier-kept", model_data, "k1")[1]
    )
    assert len(sagemaker.list_models()["Models"]) == models, "the rollback made no new model"
    assert hosting_like(sagemaker, settings(), "scones-classifier-none") == settings(), "nothing to copy"

    realtime = hosting_like(
        sagemaker, settings(capture_percent=0, hosting_instance="ml.c5.large"), "scones-classifier-x"
    )
    run(hosting_actions(sagemaker, realtime, "scones-classifier-nc", model_data, "k3"), dry_run=False)
    kept = hosting_like(sagemaker, settings(), "scones-classifier-nc")
    assert (kept.serverless, kept.hosting_instance, kept.capture_percent) == (False, "ml.c5.large", 0)


def test_waiting_for_an_endpoint_fails_when_it_serves_another_config(aws: LocalMotoServer) -> None:
    """SageMaker rolls a failed update back and reports InService: the config decides, not the status."""
    sagemaker = aws.client("sagemaker")
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    run(hosting_actions(sagemaker, settings(), "scones-classifier-rb", model_data, "r1"), dry_run=False)
    config = names(settings(), "scones-classifier-rb", model_data, "r1")[1]
    with pytest.raises(
        RuntimeError, match=f"scones-classifier-rb is InService with config {config}, not wanted"
    ):
        wait_until_serving(sagemaker, "scones-classifier-rb", "wanted", delay_s=1, max_minutes=1)


def test_a_failed_training_job_raises_with_its_failure_reason(
    aws: LocalMotoServer, staged: StagedDataset, tmp_path: Path
) -> None:
    from training.train import Hyperparameters

    # a job name of its own: moto keeps jobs per process, and other modules count their retrain jobs
    trainer = SageMakerTrainer(
        aws.client("sagemaker"), aws.client("s3"), settings(), job_name="scones-failing-job", poll_seconds=1
    )
    recipe = Hyperparameters(variant="lite9", epochs=1, limit_per_class=4)
    with pytest.raises(RuntimeError, match=r"(?s)ended Failed: .*unknown EfficientNet variant 'lite9'"):
        trainer(staged.split_dir("train"), tmp_path / "model", recipe, test_dir=None)


def _cli(aws: LocalMotoServer, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": aws.endpoint_url,
    }
    command = [sys.executable, "-m", "service.cli", *arguments]
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def test_deploy_keeps_the_endpoints_hosting_unless_told(aws: LocalMotoServer) -> None:
    """`scones deploy --model-data` onto a serverless endpoint stays serverless; `--real-time` changes it."""
    sagemaker = aws.client("sagemaker")
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    run(
        hosting_actions(sagemaker, settings(serverless=True), "scones-classifier-dk", model_data, "d1"),
        dry_run=False,
    )
    common = ["--model-data", model_data, "--role", ROLE, "--serving-image", IMAGE, "--endpoint-name"]
    kept = _cli(aws, "deploy", *common, "scones-classifier-dk", "--version", "d2")
    assert kept.returncode == 0, kept.stderr
    config = sagemaker.describe_endpoint(EndpointName="scones-classifier-dk")["EndpointConfigName"]
    assert config == names(settings(serverless=True), "scones-classifier-dk", model_data, "d2")[1]
    changed = _cli(aws, "deploy", *common, "scones-classifier-dk", "--version", "d3", "--real-time")
    assert changed.returncode == 0, changed.stderr
    config = sagemaker.describe_endpoint(EndpointName="scones-classifier-dk")["EndpointConfigName"]
    assert config.startswith("scones-d3-realtime-")
    assert sagemaker.describe_endpoint_config(EndpointConfigName=config)["DataCaptureConfig"]["EnableCapture"]
    uncaptured = _cli(
        aws, "deploy", *common, "scones-classifier-dk", "--version", "d4", "--capture-percent", "0"
    )
    assert uncaptured.returncode == 0, uncaptured.stderr
    config = sagemaker.describe_endpoint(EndpointName="scones-classifier-dk")["EndpointConfigName"]
    assert config.startswith("scones-d4-realtime-")
    assert not sagemaker.describe_endpoint_config(EndpointConfigName=config).get("DataCaptureConfig")
    assert endpoint_model_data_url(sagemaker, "scones-classifier-dk") == model_data, (
        "what retrain compares to"
    )
    assert endpoint_model_data_url(sagemaker, "scones-classifier-none") is None


def test_deploy_checks_its_endpoint_settings_before_the_stack_and_destroy_needs_no_bucket(
    aws: LocalMotoServer,
) -> None:
    """A deploy missing --serving-image for its endpoint stops before deploying the stack (its role
    can come from the stack it deploys); destroy without --delete-data looks up no bucket (the stack
    may be gone, or never have been made)."""
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    deploy = _cli(aws, "deploy", "--artifacts-bucket", "artifacts", "--model-data", model_data, "--dry-run")
    assert deploy.returncode == 2 and "--model-data needs --serving-image" in deploy.stderr
    assert "upload" not in deploy.stdout, "nothing was planned, let alone run"
    planned = _cli(
        aws,
        "deploy",
        "--artifacts-bucket",
        "artifacts",
        "--model-data",
        model_data,
        "--serving-image",
        IMAGE,
        "--stack-name",
        "never-deployed",
        "--dry-run",
    )
    assert planned.returncode == 0, planned.stderr
    assert "would create  model" in planned.stdout and "would deploy" in planned.stdout, planned.stdout
    destroy = _cli(aws, "destroy", "--dry-run", "--stack-name", "never-deployed", "--endpoint-name", "e")
    assert destroy.returncode == 0, destroy.stderr
    # without the name: the default endpoint may be another stack's, so it is asked for, not guessed
    guessed = _cli(aws, "destroy", "--dry-run", "--stack-name", "never-deployed")
    assert guessed.returncode != 0 and "give --endpoint-name" in guessed.stderr, guessed.stderr


def test_region_flag_is_where_the_commands_look(aws: LocalMotoServer) -> None:
    """The endpoint lives in us-east-1 (the environment's region): `--region eu-west-1` must look
    there, not in the environment's region, as its CloudFormation and image URIs do."""
    hosted(aws)
    elsewhere = _cli(aws, "destroy", "--bucket", "sm-data", "--dry-run", "--region", "eu-west-1")
    assert elsewhere.returncode == 0 and "nothing to delete" in elsewhere.stdout, elsewhere.stdout
    here = _cli(aws, "destroy", "--bucket", "sm-data", "--dry-run")  # default: the environment's region
    assert "would delete  endpoint" in here.stdout, here.stdout


def endpoint_tag(sagemaker: Any, arn: str) -> str | None:
    tags = {tag["Key"]: tag["Value"] for tag in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
    return tags.get("endpoint")


def test_destroy_is_dry_run_first_then_removes_everything_and_is_safe_to_repeat(aws: LocalMotoServer) -> None:
    sagemaker, cloudformation, s3 = aws.client("sagemaker"), aws.client("cloudformation"), aws.client("s3")
    hosted(aws)
    dry = _cli(aws, "destroy", "--bucket", "sm-data", "--dry-run", "--delete-data")
    assert dry.returncode == 0, dry.stderr
    assert "would delete  endpoint" in dry.stdout and "would delete  model" in dry.stdout, dry.stdout
    assert sagemaker.list_endpoints()["Endpoints"], "a dry run deletes nothing"

    # another team's resources that share the name's start, and a model without our tag
    sagemaker.create_model(
        ModelName="scones-theirs", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="scones-classifier-staging",
        ProductionVariants=[
            {
                "VariantName": "all",
                "ModelName": "scones-theirs",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(
        EndpointName="scones-classifier-staging", EndpointConfigName="scones-classifier-staging"
    )
    # another stage's endpoint serving the very same version: resources of its own, kept
    other = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    run(hosting_actions(sagemaker, settings(), "scones-classifier-prod", other, "v1"), dry_run=False)
    assert names(settings(), "scones-classifier-prod", other, "v1") != names(
        settings(), "scones-classifier", other, "v1"
    )
    s3.create_bucket(Bucket="sm-doomed")
    s3.put_object(Bucket="sm-doomed", Key="results/a.json", Body=b"{}")

    def planned() -> list[Any]:
        return destroy_actions(
            sagemaker,
            cloudformation,
            s3,
            settings(bucket="sm-doomed"),
            endpoint_name="scones-classifier",
            stack_name="scones",
            delete_data=True,
        )

    actions = planned()
    assert {(a.verb, a.kind) for a in actions} >= {
        ("delete", "endpoint"),
        ("delete", "endpoint config"),
        ("delete", "model"),
        ("delete", "bucket"),
    }
    run(actions, dry_run=False)
    endpoints = {e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]}
    assert "scones-classifier" not in endpoints
    assert {"scones-classifier-staging", "scones-classifier-prod"} <= endpoints
    # what stays: the untagged ones, and what other endpoints of ours serve
    for kind, listed in (
        ("Model", sagemaker.list_models()["Models"]),
        ("EndpointConfig", sagemaker.list_endpoint_configs()["EndpointConfigs"]),
    ):
        left = {item[f"{kind}Name"]: endpoint_tag(sagemaker, item[f"{kind}Arn"]) for item in listed}
        assert "scones-classifier" not in left.values(), left
        assert {
            "scones-theirs",
            "scones-classifier-staging",
        } & left.keys() and "scones-classifier-prod" in left.values()
    assert "sm-doomed" not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    again = planned()
    assert again == []
    sagemaker.delete_endpoint(EndpointName="scones-classifier-staging")
    sagemaker.delete_endpoint_config(EndpointConfigName="scones-classifier-staging")
    sagemaker.delete_model(ModelName="scones-theirs")


def _archive(name: str, *, link: bool = False, size: int = 2) -> tarfile.TarFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        else:
            info.size = size
        archive.addfile(info, None if link else io.BytesIO(b"x" * size))
    return tarfile.open(fileobj=io.BytesIO(buffer.getvalue()), mode="r:gz")


@pytest.mark.parametrize(
    ("archive", "problem"),
    [
        (lambda: _archive("../outside.txt"), "points outside"),
        (lambda: _archive("/etc/evil"), "points outside"),
        (lambda: _archive("model.onnx", link=True), "not a plain file"),
    ],
)
def test_a_model_archive_that_would_write_outside_its_folder_is_refused(
    archive: Callable[[], tarfile.TarFile], problem: str
) -> None:
    """The artifact comes from S3: whoever can write it must not write elsewhere on this machine."""
    with archive() as opened, pytest.raises(ValueError, match=problem):
        model_archive_members(opened)


def test_a_model_archive_over_the_size_limit_is_refused() -> None:
    with _archive("model.onnx", size=10) as opened:
        assert [m.name for m in model_archive_members(opened)] == ["model.onnx"]
        with pytest.raises(ValueError, match="over 9 bytes"):
            model_archive_members(opened, limit=9)


def test_without_endpoint_name_deploy_and_destroy_use_the_stacks_and_keep_its_settings(
    aws: LocalMotoServer,
) -> None:
    """A stack deployed with `--endpoint-name scones-classifier-prod` calls that endpoint: a later
    deploy or destroy without the flag acts on it (not on the default name), and a stack update
    passes only the parameters given, so CloudFormation keeps the endpoint name and threshold."""
    aws.client("cloudformation").create_stack(
        StackName="scones-prod",
        TemplateBody=json.dumps(
            {
                "Parameters": {"EndpointName": {"Type": "String"}, "ConfidenceThreshold": {"Type": "String"}},
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
            }
        ),
        Parameters=[
            {"ParameterKey": "EndpointName", "ParameterValue": "scones-classifier-prod"},
            {"ParameterKey": "ConfidenceThreshold", "ParameterValue": "0.9"},
        ],
    )
    model_data = "s3://sm-data/models/scones-t1/output/model.tar.gz"
    run(
        hosting_actions(aws.client("sagemaker"), settings(), "scones-classifier-prod", model_data, "v1"),
        dry_run=False,
    )
    stack = ["--stack-name", "scones-prod", "--dry-run"]
    destroy = _cli(aws, "destroy", *stack)
    assert destroy.returncode == 0, destroy.stderr
    assert re.search(r"would delete\s+endpoint\s+scones-classifier-prod\n", destroy.stdout), destroy.stdout
    deploy = _cli(aws, "deploy", "--model-data", model_data, "--role", ROLE, "--serving-image", IMAGE, *stack)
    assert deploy.returncode == 0 and "scones-classifier-prod" in deploy.stdout, deploy.stderr
    update = _cli(
        aws, "deploy", "--artifacts-bucket", "artifacts", "--alarm-email", "ops@example.com", *stack
    )
    deploy_command = next(line for line in update.stdout.splitlines() if "cloudformation deploy" in line)
    assert "--parameter-overrides AlarmEmail=ops@example.com" in deploy_command
    assert "EndpointName" not in deploy_command and "ConfidenceThreshold" not in deploy_command


def test_destroy_with_the_data_empties_the_bucket_last_once_the_writers_are_gone(
    aws: LocalMotoServer,
) -> None:
    """The endpoint's data capture and the stack's functions write to the bucket: emptied while they
    live, it could take new objects and refuse its deletion. Both are deleted and waited for first."""
    sagemaker, cloudformation, s3 = aws.client("sagemaker"), aws.client("cloudformation"), aws.client("s3")
    hosted(aws)
    cloudformation.create_stack(
        StackName="scones-writers",
        TemplateBody=json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}),
    )
    s3.create_bucket(Bucket="sm-written")
    s3.put_object(Bucket="sm-written", Key="datacapture/a.jsonl", Body=b"{}")
    actions = destroy_actions(
        sagemaker,
        cloudformation,
        s3,
        settings(bucket="sm-written"),
        endpoint_name="scones-classifier",
        stack_name="scones-writers",
        delete_data=True,
    )
    kinds = [action.kind for action in actions]
    assert kinds[0] == "endpoint" and kinds[-3:] == ["CloudFormation stack", "every object in", "bucket"], (
        kinds
    )
    run(actions, dry_run=False)
    assert "sm-written" not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert describe_endpoint(sagemaker, "scones-classifier") is None
