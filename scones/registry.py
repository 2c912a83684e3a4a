"""The model registry: every trained model as a version with its metrics, training-data id and a status.

Statuses: `pending` (trained, not decided), `approved` (passed the gate), `rejected` (refused by it),
`serving` (the endpoint's model), `retired` (served once, replaced). Two adapters behind one port:

- `BucketRegistry` (the embedded default, and any bucket): one JSON record per version under
  `models/registry/<version>.json` in the data bucket, with the history of its statuses.
- `SageMakerRegistry` (AWS): a SageMaker Model Registry model package group; each version is a model
  package whose approval status carries approved/rejected/pending and whose customer metadata
  carries our status, version and training-data id.

AWS clients are injected; nothing here imports boto3.
"""

from __future__ import annotations

import base64
import json
import unicodedata
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, Field

from scones.model_metadata import ModelMetadata

Status = Literal["pending", "approved", "rejected", "serving", "retired"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "approved", "rejected", "serving", "retired")
REGISTRY_PREFIX: Final = "models/registry/"
SUMMARY_METRICS: Final = ("n", "accuracy", "coverage", "accepted_accuracy", "ece")


class StatusChange(BaseModel):
    status: Status
    at: str
    reason: str = ""


class RegistryEntry(BaseModel):
    version: str
    status: Status
    training_data_sha256: str = ""
    architecture: str = ""
    created_at: str = ""
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)  # split -> summary
    model_data_url: str = ""  # where the artifact is (AWS: model.tar.gz)
    history: list[StatusChange] = Field(default_factory=list)


def entry_from(metadata: ModelMetadata, *, model_data_url: str = "") -> RegistryEntry:
    """A new `pending` entry for a trained model, with the summary of its measured metrics."""
    metrics = {
        split: {name: value for name, value in report.items() if name in SUMMARY_METRICS}
        for split, report in metadata.metrics.items()
        if isinstance(report, dict)
    }
    return RegistryEntry(
        version=metadata.version,
        status="pending",
        training_data_sha256=metadata.training_data_sha256,
        architecture=metadata.architecture,
        created_at=metadata.created_at,
        metrics=metrics,
        model_data_url=model_data_url,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelRegistry(Protocol):
    def register(self, entry: RegistryEntry, *, reason: str = "") -> RegistryEntry: ...

    def set_status(self, version: str, status: Status, *, reason: str = "") -> RegistryEntry: ...

    def get(self, version: str) -> RegistryEntry | None: ...

    def entries(self) -> list[RegistryEntry]: ...


def record_promotion(registry: ModelRegistry, version: str, *, reason: str) -> None:
    """`version` is serving now; whatever served before it is retired."""
    for entry in registry.entries():
        if entry.status == "serving" and entry.version != version:
            registry.set_status(entry.version, "retired", reason=f"replaced by {version}")
    registry.set_status(version, "serving", reason=reason)


MAX_WRITE_ATTEMPTS: Final = 20


class BucketRegistry:
    """Registry records as JSON objects under `models/registry/` in a bucket."""

    def __init__(self, s3: Any, bucket: str, prefix: str = REGISTRY_PREFIX) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, version: str) -> str:
        return f"{self.prefix}{version}.json"

    def _write(self, entry: RegistryEntry, **condition: str) -> RegistryEntry:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self._key(entry.version),
            Body=entry.model_dump_json(indent=2).encode(),
            ContentType="application/json",
            **condition,
        )
        return entry

    def _lost_race(self, error: Exception) -> bool:
        """A conditional write refused: someone wrote the record since it was read."""
        code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
        return code in {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}

    def register(self, entry: RegistryEntry, *, reason: str = "") -> RegistryEntry:
        existing = self.get(entry.version)
        if existing is not None:
            return existing
        change = StatusChange(status=entry.status, at=_now(), reason=reason or "registered")
        try:  # created once: a second registration of the version keeps the first
            return self._write(entry.model_copy(update={"history": [change]}), IfNoneMatch="*")
        except self.s3.exceptions.ClientError as error:
            if not self._lost_race(error):
                raise
        registered = self.get(entry.version)
        assert registered is not None
        return registered

    def set_status(self, version: str, status: Status, *, reason: str = "") -> RegistryEntry:
        """Read, change, write only if nobody wrote in between (else again): no change is lost.

        Setting the status it has adds its reason to the history (e.g. why a promotion failed)."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            read = self._read(version)
            if read is None:
                raise KeyError(f"model version {version} is not registered")
            entry, etag = read
            noted = bool(entry.history) and entry.history[-1].reason == reason
            if entry.status == status and (not reason or noted):  # the same status again: a new reason only
                return entry
            change = StatusChange(status=status, at=_now(), reason=reason)
            changed = entry.model_copy(update={"status": status, "history": [*entry.history, change]})
            try:
                return self._write(changed, IfMatch=etag)
            except self.s3.exceptions.ClientError as error:
                if not self._lost_race(error):
                    raise
        raise RuntimeError(f"model version {version}: {MAX_WRITE_ATTEMPTS} writes in a row lost a race")

    def get(self, version: str) -> RegistryEntry | None:
        read = self._read(version)
        return None if read is None else read[0]

    def _read(self, version: str) -> tuple[RegistryEntry, str] | None:
        """The record and the ETag of the version read."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self._key(version))
        except self.s3.exceptions.NoSuchKey:
            return None
        return RegistryEntry.model_validate_json(response["Body"].read()), str(response["ETag"])

    def entries(self) -> list[RegistryEntry]:
        found = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                found.append(RegistryEntry.model_validate_json(body))
        return sorted(found, key=lambda entry: entry.version)


_APPROVAL: Final[dict[Status, str]] = {
    "pending": "PendingManualApproval",
    "approved": "Approved",
    "rejected": "Rejected",
    "serving": "Approved",
    "retired": "Approved",  # it passed once; "retired" lives in the customer metadata
}


METADATA_VALUE_LIMIT: Final = 256
_METADATA_PUNCTUATION: Final = frozenset("_.:/=+-@")
_ENCODED_MARK: Final = "b64:"


def metadata_safe(text: str) -> bool:
    """Whether SageMaker takes `text` as a customer metadata value: letters, numbers, spaces and `_.:/=+-@`.

    botocore does not check that pattern and moto takes anything; AWS refuses the whole request.
    """
    return all(unicodedata.category(ch)[0] in "LNZ" or ch in _METADATA_PUNCTUATION for ch in text)


def encode_metadata_value(text: str) -> str:
    """`text` as SageMaker takes it: as it is where allowed, else base64 behind `b64:` (cut to fit 256)."""
    if metadata_safe(text) and not text.startswith(_ENCODED_MARK) and len(text) <= METADATA_VALUE_LIMIT:
        return text
    room = (METADATA_VALUE_LIMIT - len(_ENCODED_MARK)) // 4 * 3
    return _ENCODED_MARK + base64.b64encode(text.encode()[:room]).decode()


def decode_metadata_value(stored: str) -> str:
    if not stored.startswith(_ENCODED_MARK):
        return stored
    return base64.b64decode(stored.removeprefix(_ENCODED_MARK)).decode(errors="ignore")


class SageMakerRegistry:
    """A SageMaker Model Registry model package group; one model package per version."""

    def __init__(self, sagemaker: Any, group: str, *, serving_image: str = "") -> None:
        self.sagemaker = sagemaker
        self.group = group
        self.serving_image = serving_image

    def _ensure_group(self) -> None:
        try:
            self.sagemaker.describe_model_package_group(ModelPackageGroupName=self.group)
        except self.sagemaker.exceptions.ClientError:
            self.sagemaker.create_model_package_group(
                ModelPackageGroupName=self.group,
                ModelPackageGroupDescription="Scones Unlimited bicycle/motorcycle classifier versions",
            )

    def _packages(self) -> list[dict[str, Any]]:
        packages = []
        for page in self.sagemaker.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=self.group
        ):
            for summary in page["ModelPackageSummaryList"]:
                packages.append(
                    self.sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
                )
        return packages

    @staticmethod
    def _properties(entry: RegistryEntry) -> dict[str, str]:
        """The entry as customer metadata, each value in the characters and 256-character limit AWS takes."""
        properties = {
            "version": entry.version,
            "status": entry.status,
            "training_data_sha256": entry.training_data_sha256,
            "architecture": entry.architecture,
            "created_at": entry.created_at,
            "model_data_url": entry.model_data_url,
        }
        for split, report in entry.metrics.items():
            for name, value in report.items():
                properties[f"{split}.{name}"] = json.dumps(value)
        return {name: encode_metadata_value(value) for name, value in properties.items() if value}

    @staticmethod
    def _entry(package: dict[str, Any]) -> RegistryEntry:
        stored = package.get("CustomerMetadataProperties", {})
        properties = {name: decode_metadata_value(value) for name, value in stored.items()}
        metrics: dict[str, dict[str, Any]] = {}
        for name in [name for name in properties if "." in name]:
            split, metric = name.split(".", 1)
            metrics.setdefault(split, {})[metric] = json.loads(properties.pop(name))
        return RegistryEntry.model_validate({**properties, "metrics": metrics})

    def _find(self, version: str) -> dict[str, Any] | None:
        for package in self._packages():
            if (
                decode_metadata_value(package.get("CustomerMetadataProperties", {}).get("version", ""))
                == version
            ):
                return package
        return None

    def register(self, entry: RegistryEntry, *, reason: str = "") -> RegistryEntry:
        self._ensure_group()
        existing = self._find(entry.version)
        if existing is not None:
            return self._entry(existing)
        request: dict[str, Any] = {
            "ModelPackageGroupName": self.group,
            "ModelPackageDescription": f"{entry.version}: {entry.architecture}"[:1000],
            "ModelApprovalStatus": _APPROVAL[entry.status],
            "CustomerMetadataProperties": self._properties(entry),
        }
        if entry.model_data_url and self.serving_image:
            request["InferenceSpecification"] = {
                "Containers": [{"Image": self.serving_image, "ModelDataUrl": entry.model_data_url}],
                "SupportedContentTypes": [
                    "image/png",
                    "image/jpeg",
                    "application/x-image",
                    "application/json",
                ],
                "SupportedResponseMIMETypes": ["application/json"],
            }
        self.sagemaker.create_model_package(**request)
        return entry

    def set_status(self, version: str, status: Status, *, reason: str = "") -> RegistryEntry:
        package = self._find(version)
        if package is None:
            raise KeyError(f"model version {version} is not registered in {self.group}")
        properties = dict(package.get("CustomerMetadataProperties", {}))
        properties["status"] = status
        request: dict[str, Any] = {
            "ModelPackageArn": package["ModelPackageArn"],
            "ModelApprovalStatus": _APPROVAL[status],
            "CustomerMetadataProperties": properties,
        }
        if reason:
            request["ApprovalDescription"] = reason[:1000]
        self.sagemaker.update_model_package(**request)
        return self._entry({"CustomerMetadataProperties": properties})

    def get(self, version: str) -> RegistryEntry | None:
        package = self._find(version)
        return None if package is None else self._entry(package)

    def entries(self) -> list[RegistryEntry]:
        return sorted((self._entry(p) for p in self._packages()), key=lambda entry: entry.version)


def describe(entry: RegistryEntry) -> str:
    """One line: version, status, test accuracy, training data id."""
    test = entry.metrics.get("test", {})
    accuracy = test.get("accuracy")
    shown = f"test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else "test accuracy -"
    return f"{entry.version}  {entry.status:<8}  {shown}  data {entry.training_data_sha256[:12] or '-'}"


def dumps(entries: list[RegistryEntry]) -> str:
    return json.dumps([entry.model_dump() for entry in entries], indent=2)
