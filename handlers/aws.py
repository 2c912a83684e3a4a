"""boto3-backed implementations of the steps' ports (S3, the SageMaker endpoint, Step Functions, SQS)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from handlers.settings import FunctionSettings
from scones.objects import execution_arn, s3_version_selector, version_id_or_none
from scones.reconcile import StoredObject
from scones.steps import (
    EndpointThrottled,
    EndpointUnavailable,
    ModelRejected,
    ObjectMissing,
    ObjectSuperseded,
    Prediction,
    TransientError,
)

DEFAULT_RETRIES: Final[dict[str, Any]] = {"mode": "standard", "max_attempts": 3}
# botocore's 60 s timeouts outlast the functions' own (10-30 s): a stalled call must fail and be
# retried within the invocation, not time the whole invocation out
DEFAULT_CLIENT_CONFIG: Final[dict[str, Any]] = {
    "retries": DEFAULT_RETRIES,
    "max_pool_connections": 32,
    "connect_timeout": 3,
    "read_timeout": 10,
}
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
SUPERSEDED_CODES = frozenset({"PreconditionFailed", "412"})  # If-Match: the key holds another version
RETRYABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException"}
)


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def client(
    service: str, settings: FunctionSettings, *, endpoint_url: str | None = None, **config: Any
) -> Any:
    """A client for this function's region and credentials; the local engine adds its endpoint URL.

    Clients are thread-safe and costly to create (service models, endpoint rules), so one is shared
    by every handler built with the same settings, as a warm Lambda environment would keep it.
    """
    key = (
        service,
        settings.region,
        endpoint_url or settings.endpoint_url,
        settings.access_key_id,
        settings.secret_access_key,
        settings.session_token,
        repr(sorted(config.items())),
    )
    with _clients_lock:
        if key not in _clients:
            session = boto3.session.Session(
                aws_access_key_id=settings.access_key_id,
                aws_secret_access_key=settings.secret_access_key,
                aws_session_token=settings.session_token,
                region_name=settings.region,
            )
            defaults: dict[str, Any] = DEFAULT_CLIENT_CONFIG | config
            _clients[key] = session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=endpoint_url or settings.endpoint_url,
                config=Config(**defaults),
            )
        return _clients[key]


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


class S3ObjectStore:
    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._s3, operation)(**kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in MISSING_CODES:
                raise ObjectMissing(f"s3://{kwargs['Bucket']}/{kwargs['Key']} does not exist") from None
            if code in SUPERSEDED_CODES:
                raise ObjectSuperseded(
                    f"s3://{kwargs['Bucket']}/{kwargs['Key']} was overwritten: it is no longer version "
                    f"{kwargs.get('IfMatch', '')}"
                ) from None
            if code in RETRYABLE_CODES or _status(error) >= 500:
                raise TransientError(f"S3 {operation} failed: {code}") from error
            raise
        except (BotoCoreError, ConnectionError) as error:
            raise TransientError(f"S3 {operation} failed: {error}") from error

    def read(
        self, bucket: str, key: str, max_bytes: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[int, bytes | None]:
        """One GET; the body is left unread (and the connection closed) when it is over `max_bytes`."""
        version = s3_version_selector(etag, version_id)
        response = self._call("get_object", Bucket=bucket, Key=key, **version)
        size = int(response["ContentLength"])
        if size > max_bytes:
            response["Body"].close()
            return size, None
        try:
            body: bytes = response["Body"].read()
        except (BotoCoreError, ConnectionError) as error:
            raise TransientError(f"S3 read of s3://{bucket}/{key} failed: {error}") from error
        return size, body

    def write_json(self, bucket: str, key: str, body: str) -> None:
        self._call("put_object", Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")

    def delete(self, bucket: str, key: str) -> None:
        self._call("delete_object", Bucket=bucket, Key=key)

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        """Every object under `prefix` (the reconciler's port)."""
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], item["ETag"], item["Size"], item["LastModified"])

    def list_current_versions(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        """Every object under `prefix` with its current version's id (the reconciler's port); one
        listing, in a versioned bucket or not (S3 answers `null` for objects without versions)."""
        for page in self._s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Versions", []):
                if item.get("IsLatest"):
                    yield StoredObject(
                        item["Key"],
                        item["ETag"],
                        item["Size"],
                        item["LastModified"],
                        version_id_or_none(item.get("VersionId")),
                    )


class SqsQueue:
    """One SQS queue, for sending (the review queue's port)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._url = queue_url

    def send(self, body: str) -> None:
        self._sqs.send_message(QueueUrl=self._url, MessageBody=body)


def _custom_attributes(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(";") if "=" in item)
    return {name.strip(): value.strip() for name, value in pairs}


class EndpointClassifier:
    """A SageMaker real-time endpoint (or the local one) behind `invoke_endpoint`."""

    def __init__(self, runtime: Any, endpoint_name: str) -> None:
        self._runtime = runtime
        self._endpoint_name = endpoint_name

    def classify(self, png: bytes) -> Prediction:
        try:
            response = self._runtime.invoke_endpoint(
                EndpointName=self._endpoint_name, ContentType="image/png", Accept="application/json", Body=png
            )
            body = response["Body"].read()  # a stalled or cut-off answer is the endpoint's failure too
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            original = int(str(error.response.get("OriginalStatusCode") or 0))
            if code == "ThrottlingException" or original == 429:
                raise EndpointThrottled(f"endpoint {self._endpoint_name}: {code or error}") from None
            if code == "ModelError" and 400 <= original < 500:
                raise ModelRejected(error.response.get("OriginalMessage") or str(error)) from None
            raise EndpointUnavailable(f"endpoint {self._endpoint_name}: {code or error}") from None
        except (BotoCoreError, ConnectionError, ReadTimeoutError) as error:
            raise EndpointUnavailable(f"endpoint {self._endpoint_name}: {error}") from None
        try:
            probabilities = json.loads(body)
        except ValueError:
            raise EndpointUnavailable(f"endpoint {self._endpoint_name}: an answer that is no JSON") from None
        attributes = _custom_attributes(response.get("CustomAttributes", ""))
        labels = attributes.get("label-order", "")
        return Prediction(
            probabilities=[float(p) for p in probabilities],
            label_order=labels.split(",") if labels else [],
            model_version=attributes.get("model-version", "unknown"),
        )


class StepFunctionsStarter:
    def __init__(self, stepfunctions: Any, state_machine_arn: str) -> None:
        self._sfn = stepfunctions
        self._arn = state_machine_arn

    def start(self, name: str, payload: str) -> bool:
        try:
            self._sfn.start_execution(stateMachineArn=self._arn, name=name, input=payload)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return False
            raise
        return True

    def status(self, name: str) -> str | None:
        described = self._describe(name)
        return None if described is None else str(described["status"])

    def describe(self, name: str) -> tuple[str, str] | None:
        described = self._describe(name)
        return None if described is None else (str(described["status"]), str(described.get("input", "")))

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self._sfn.describe_execution(
                executionArn=execution_arn(self._arn, name)
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise
        return response
