"""The model registry's one contract, held by both adapters against moto over loopback: the data bucket's
`models/registry/` and SageMaker's Model Registry (a model package group)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import regex

from scones.model_metadata import ModelMetadata
from scones.registry import (
    BucketRegistry,
    ModelRegistry,
    SageMakerRegistry,
    Status,
    entry_from,
    record_promotion,
)
from service.moto_adapters.server import LocalMotoServer, start_moto_server


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalMotoServer]:
    with start_moto_server() as server:
        yield server


@pytest.fixture(params=["bucket", "sagemaker"])
def registry(request: pytest.FixtureRequest, aws: LocalMotoServer) -> ModelRegistry:
    name = f"registry-{request.node.name.split('[')[0][-20:].replace('_', '-')}"
    if request.param == "bucket":
        aws.client("s3").create_bucket(Bucket=name)
        return BucketRegistry(aws.client("s3"), name)
    return SageMakerRegistry(aws.client("sagemaker"), name, serving_image="123.dkr.ecr/scones-serve:1")


def metadata(version: str, accuracy: float) -> ModelMetadata:
    return ModelMetadata(
        version=version,
        input_size=128,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        architecture="efficientnet-lite0 x1 (seeds 0) + flip TTA, ImageNet-pretrained, fine-tuned at 128 px",
        training_data_sha256="ab" * 32,
        created_at="2026-11-24T10:00:00+00:00",
        metrics={
            "train_seconds": 140.0,
            "test": {
                "n": 200,
                "accuracy": accuracy,
                "coverage": 0.94,
                "accepted_accuracy": 0.97,
                "ece": 0.03,
            },
        },
    )


def test_sagemaker_metadata_keeps_to_the_characters_aws_accepts(aws: LocalMotoServer) -> None:
    """moto takes any metadata; AWS refuses a value outside its pattern (the architecture's parentheses)."""
    sagemaker = aws.client("sagemaker")
    registry = SageMakerRegistry(sagemaker, "registry-patterns", serving_image="123.dkr.ecr/scones-serve:1")
    entry = entry_from(metadata("20261124-120000-cccccccc", 0.96), model_data_url="s3://data/m (1).tar.gz")
    registry.register(entry, reason="trained")
    registry.set_status(entry.version, "rejected", reason="gate: accuracy 0.96 < 0.965 (serving)")
    shape = sagemaker.meta.service_model.shape_for("CreateModelPackageInput").members[
        "CustomerMetadataProperties"
    ]
    key_pattern = regex.compile("^" + str(shape.key.metadata["pattern"]))
    value_pattern = regex.compile("^" + str(shape.value.metadata["pattern"]))
    (summary,) = sagemaker.list_model_packages(ModelPackageGroupName="registry-patterns")[
        "ModelPackageSummaryList"
    ]
    stored = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    for name, value in stored["CustomerMetadataProperties"].items():
        assert key_pattern.fullmatch(name) and value_pattern.fullmatch(value), (name, value)
    assert not value_pattern.fullmatch(entry.architecture), "the case this guards: a value AWS refuses"
    read = registry.get(entry.version)
    assert read is not None
    assert (read.architecture, read.model_data_url, read.status) == (
        entry.architecture,
        "s3://data/m (1).tar.gz",
        "rejected",
    )


def test_a_version_goes_from_pending_to_serving_to_retired(registry: ModelRegistry) -> None:
    first = registry.register(entry_from(metadata("20261124-100000-aaaaaaaa", 0.95)), reason="trained")
    assert first.status == "pending"
    assert (
        registry.register(entry_from(metadata("20261124-100000-aaaaaaaa", 0.5))).metrics == first.metrics
    ), "registering a known version again changes nothing"
    registry.set_status(first.version, "approved", reason="gate passed")
    record_promotion(registry, first.version, reason="promoted")

    second = entry_from(
        metadata("20261124-110000-bbbbbbbb", 0.965), model_data_url="s3://data/models/b.tar.gz"
    )
    registry.register(second)
    registry.set_status(second.version, "approved", reason="gate passed")
    record_promotion(registry, second.version, reason="promoted")

    entries = registry.entries()
    assert [(e.version, e.status) for e in entries] == [
        (first.version, "retired"),
        (second.version, "serving"),
    ]
    stored = registry.get(second.version)
    assert stored is not None
    assert stored.metrics["test"] == {
        "n": 200,
        "accuracy": 0.965,
        "coverage": 0.94,
        "accepted_accuracy": 0.97,
        "ece": 0.03,
    }
    assert stored.training_data_sha256 == "ab" * 32 and stored.model_data_url == "s3://data/models/b.tar.gz"
    assert registry.get("20990101-000000-cccccccc") is None


def test_a_rejected_candidate_stays_out_of_service(registry: ModelRegistry) -> None:
    entry = registry.register(entry_from(metadata("20261124-120000-dddddddd", 0.5)))
    registry.set_status(entry.version, "rejected", reason="test accuracy: WORSE")
    assert [(e.version, e.status) for e in registry.entries()] == [(entry.version, "rejected")]
    with pytest.raises(KeyError):
        registry.set_status("20990101-000000-eeeeeeee", "serving")


def test_bucket_records_keep_the_history_of_statuses(aws: LocalMotoServer) -> None:
    aws.client("s3").create_bucket(Bucket="registry-history")
    registry = BucketRegistry(aws.client("s3"), "registry-history")
    version = registry.register(entry_from(metadata("20261124-130000-ffffffff", 0.96))).version
    registry.set_status(version, "approved", reason="gate passed")
    record_promotion(registry, version, reason="promoted")
    entry = registry.get(version)
    assert entry is not None
    assert [(c.status, c.reason) for c in entry.history] == [
        ("pending", "registered"),
        ("approved", "gate passed"),
        ("serving", "promoted"),
    ]
    listed = aws.client("s3").list_objects_v2(Bucket="registry-history")["Contents"]
    assert [item["Key"] for item in listed] == [f"models/registry/{version}.json"]


def test_sagemaker_packages_carry_the_approval_status_and_short_metadata(aws: LocalMotoServer) -> None:
    sagemaker = aws.client("sagemaker")
    registry = SageMakerRegistry(sagemaker, "registry-approval", serving_image="123.dkr.ecr/scones-serve:1")
    for version, status in (
        ("20261124-140000-11111111", "rejected"),
        ("20261124-150000-22222222", "serving"),
    ):
        registry.register(entry_from(metadata(version, 0.96), model_data_url=f"s3://data/{version}.tar.gz"))
        registry.set_status(version, status, reason="decided")  # type: ignore[arg-type]
    summaries = sagemaker.list_model_packages(ModelPackageGroupName="registry-approval")[
        "ModelPackageSummaryList"
    ]
    approvals = {}
    for summary in summaries:
        package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        properties = package["CustomerMetadataProperties"]
        assert all(len(value) <= 256 for value in properties.values()), (
            "AWS caps each value at 256 characters"
        )
        approvals[properties["version"]] = (package["ModelApprovalStatus"], properties["status"])
        container = package["InferenceSpecification"]["Containers"][0]
        assert container["ModelDataUrl"] == f"s3://data/{properties['version']}.tar.gz"
    assert approvals == {
        "20261124-140000-11111111": ("Rejected", "rejected"),
        "20261124-150000-22222222": ("Approved", "serving"),
    }


def test_concurrent_status_changes_of_the_bucket_registry_lose_none(aws: LocalMotoServer) -> None:
    """Two actors (a retrain and `scones models promote`) change one record at once: each write is
    conditional on the version it read, so every change that returned is in the history."""
    from concurrent.futures import ThreadPoolExecutor

    aws.client("s3").create_bucket(Bucket="registry-races")
    registries = [BucketRegistry(aws.client("s3"), "registry-races") for _ in range(2)]
    registries[0].register(entry_from(metadata("v1", 0.9)), reason="trained")
    statuses: list[Status] = ["approved", "rejected"] * 6

    def change(n: int) -> str | None:
        entry = registries[n % 2].set_status("v1", statuses[n], reason=f"change {n}")
        return entry.history[-1].reason if entry.history[-1].reason == f"change {n}" else None

    with ThreadPoolExecutor(6) as pool:
        applied = {reason for reason in pool.map(change, range(len(statuses))) if reason}
    final = registries[0].get("v1")
    assert final is not None and applied
    recorded = {change.reason for change in final.history}
    assert applied <= recorded, f"changes lost: {applied - recorded}"
    assert len(final.history) == 1 + len(applied)
