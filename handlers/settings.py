"""Each function's settings, parsed once from its environment variables into a typed model.

Built from an explicit mapping (os.environ on AWS; the function's own Environment in the local
runtime), so concurrent functions in one process never share or swap environment state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from scones.defaults import (
    CONFIDENCE_THRESHOLD,
    DEFAULT_ENDPOINT_NAME,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    QUEUE_RETENTION_S,
    REVIEW_REQUEUE_AFTER_S,
)
from workflow.names import METRICS_NAMESPACE


class FunctionSettings(BaseModel):
    """Settings every function has."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    service: str = Field(default="scones", alias="POWERTOOLS_SERVICE_NAME")
    metrics_namespace: str = Field(default=METRICS_NAMESPACE, alias="POWERTOOLS_METRICS_NAMESPACE")
    log_level: str = Field(default="INFO", alias="POWERTOOLS_LOG_LEVEL")
    tracing_disabled: bool = Field(default=False, alias="POWERTOOLS_TRACE_DISABLED")
    region: str = Field(default="us-east-1", alias="AWS_REGION")
    # Only for the local engine: the moto server (and the model router) behind every AWS client.
    endpoint_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL")
    # Lambda puts the function's credentials in its environment; read them from the same mapping.
    access_key_id: str | None = Field(default=None, alias="AWS_ACCESS_KEY_ID", repr=False)
    secret_access_key: str | None = Field(default=None, alias="AWS_SECRET_ACCESS_KEY", repr=False)
    session_token: str | None = Field(default=None, alias="AWS_SESSION_TOKEN", repr=False)

    @classmethod
    def from_environment(cls, environment: Mapping[str, str]) -> Self:
        return cls.model_validate(dict(environment))


class StartSettings(FunctionSettings):
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN")


class ReconcileSettings(FunctionSettings):
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN")
    bucket: str = Field(alias="BUCKET_NAME")
    review_queue_url: str = Field(alias="REVIEW_QUEUE_URL")
    # a review item with no label goes back on the queue this long after it was last queued: a day
    # or more under SQS's 14-day retention, for the hourly schedule (scones/review_requeue.py)
    review_requeue_after_s: float = Field(
        default=REVIEW_REQUEUE_AFTER_S,
        alias="REVIEW_REQUEUE_AFTER_SECONDS",
        ge=0,
        le=QUEUE_RETENTION_S - 86400,
    )
    # uploads younger than this may still be in flight: a later schedule looks at them again
    min_age_s: float = Field(default=900.0, alias="RECONCILE_MIN_AGE_SECONDS", ge=0)


class SerializeSettings(FunctionSettings):
    max_image_bytes: int = Field(default=MAX_IMAGE_BYTES, alias="MAX_IMAGE_BYTES", gt=0)
    max_image_pixels: int = Field(default=MAX_IMAGE_PIXELS, alias="MAX_IMAGE_PIXELS", gt=0)


class ClassifySettings(FunctionSettings):
    endpoint_name: str = Field(default=DEFAULT_ENDPOINT_NAME, alias="ENDPOINT_NAME")
    endpoint_timeout_s: float = Field(default=10.0, alias="ENDPOINT_TIMEOUT_SECONDS", gt=0)
    sagemaker_runtime_url: str | None = Field(default=None, alias="AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")


class FilterSettings(FunctionSettings):
    threshold: float = Field(default=CONFIDENCE_THRESHOLD, alias="CONFIDENCE_THRESHOLD", ge=0.0, le=1.0)


class RecordSettings(FunctionSettings):
    # powertools Idempotency's DynamoDB table; unset, every invocation writes (no idempotency layer)
    idempotency_table: str | None = Field(default=None, alias="IDEMPOTENCY_TABLE")
    idempotency_ttl_s: int = Field(default=24 * 3600, alias="IDEMPOTENCY_TTL_SECONDS", gt=0)
