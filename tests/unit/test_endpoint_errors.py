"""What the classify step makes of each way SageMaker's InvokeEndpoint refuses: the error type decides
the workflow's retries (seconds for a failure, minutes for throttling, none for a refused input)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from handlers.aws import EndpointClassifier
from scones.steps import EndpointThrottled, EndpointUnavailable, ModelRejected


class RefusingRuntime:
    """sagemaker-runtime whose InvokeEndpoint answers with one error (the fault injected)."""

    def __init__(self, code: str, original_status: int | None = None) -> None:
        response: dict[str, Any] = {"Error": {"Code": code, "Message": "refused"}}
        if original_status is not None:
            response["OriginalStatusCode"] = original_status
        self.error = ClientError(response, "InvokeEndpoint")  # type: ignore[arg-type]

    def invoke_endpoint(self, **_: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("code", "original_status", "raised"),
    [
        ("ThrottlingException", None, EndpointThrottled),  # SageMaker's own: past the capacity
        ("ModelError", 429, EndpointThrottled),  # the container's
        ("ModelError", 400, ModelRejected),
        ("ModelError", 500, EndpointUnavailable),
        ("ServiceUnavailable", None, EndpointUnavailable),
        ("ValidationError", None, EndpointUnavailable),  # no such endpoint (yet): replayable
    ],
)
def test_each_refusal_becomes_the_error_its_retries_are_for(
    code: str, original_status: int | None, raised: type[Exception]
) -> None:
    classifier = EndpointClassifier(RefusingRuntime(code, original_status), "scones-classifier")
    with pytest.raises(raised) as caught:
        classifier.classify(b"png")
    assert type(caught.value) is raised
