"""Outcome records: the one JSON document each upload ends with (accepted, review or failed)."""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["accepted", "review", "failed"]
OUTCOME_FOLDER: Final[dict[str, Literal["results", "review", "failed"]]] = {
    "accepted": "results",
    "review": "review",
    "failed": "failed",
}

# Error types raised by the workflow's steps → the failure record's reason code.
REASON_BY_ERROR: Final[dict[str, str]] = {
    "ObjectMissing": "object_missing",
    "ObjectSuperseded": "superseded",
    "EndpointUnavailable": "endpoint_unavailable",
    "EndpointThrottled": "throttled",  # still throttled after minutes of retries
    "ModelRejected": "model_rejected",
    "TransientError": "transient_error",
    "States.Timeout": "timeout",
    "Sandbox.Timedout": "timeout",
    "States.TaskFailed": "task_failed",
    "Lambda.TooManyRequestsException": "throttled",  # still throttled after minutes of retries
}


# The reason of a dead letter whose failure could not be recorded either (no record under failed/).
UNRECORDED: Final = "unrecorded"

# Failures caused by the infrastructure, not by the upload: `scones replay` re-drives these by default.
REPLAYABLE_REASONS: Final = frozenset(
    {
        "endpoint_unavailable",
        "throttled",
        "transient_error",
        "timeout",
        "task_failed",
        "internal_error",
        "review_queue_unavailable",
        "model_rejected",  # the endpoint refused the thumbnail serialize made: the model is at fault
        UNRECORDED,
    }
)


# Every reason a failure record can carry besides the upload's own faults (`ImageRejected` reasons).
FAILURE_REASONS: Final = frozenset({*REASON_BY_ERROR.values(), *REPLAYABLE_REASONS})


class OutcomeRecord(BaseModel):
    """What happened to one object version. Written under `results/`, `review/` or `failed/`."""

    model_config = ConfigDict(extra="allow")

    outcome: Outcome
    bucket: str
    key: str
    etag: str
    version_id: str | None = None
    size: int | None = None
    execution_id: str | None = None
    received_at: str | None = None
    recorded_at: str | None = None
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    threshold: float | None = None
    model_version: str | None = None
    reason: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    source: dict[str, Any] | None = None  # format, mode and size of the upload
    replay: dict[str, Any] | None = None  # on failures: the object reference `scones replay` re-drives

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def failure_reason(error: dict[str, Any]) -> tuple[str, str, str]:
    """(reason code, error type, message) from a Step Functions Catch `{"Error", "Cause"}` object.

    An `ImageRejected` message starts with its reason code (`not_an_image: ...`).
    """
    error_type = str(error.get("Error") or "Unknown")
    cause = error.get("Cause") or ""
    message = str(cause)
    try:
        payload = json.loads(cause) if isinstance(cause, str) and cause.startswith("{") else None
    except json.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        message = str(payload.get("errorMessage") or payload.get("message") or cause)
        error_type = str(payload.get("errorType") or error_type)
    if error_type == "ImageRejected" and ":" in message:
        return message.split(":", 1)[0].strip(), error_type, message
    if error_type.startswith("SQS.") or "sqs" in error_type.lower():
        return "review_queue_unavailable", error_type, message
    return REASON_BY_ERROR.get(error_type, "internal_error"), error_type, message
