"""(speed) Step Functions' `lambda:invoke` tasks reach the Lambda backend directly, not through a client.

moto's interpreter (5.2.5) runs a `lambda:invoke` task as `boto3 client.invoke(...)`: a signed
request, moto's HTTP routing and response serializing, then botocore parsing the answer back, all
in the stack's own process, to reach `LambdaBackend.invoke` (where `lambda_runtime` runs our
handler). That plumbing cost about a tenth of the stack's CPU under load, four times per image.
AWS's Step Functions calls Lambda from inside AWS too; the result is the same document.
`install()` replaces `lambda_eval_utils._invoke_lambda_function` with a version that, for a
synchronous call of a function the backend has (parameters `FunctionName`, `Payload`,
`Qualifier`), calls the backend's `invoke` and builds the response the client would have returned
(`StatusCode`, `ExecutedVersion`, `FunctionError`, `Payload` read as JSON or text), with the
Invoke API's 6 MB response limit. Anything else (another parameter, an unknown function, a
request the backend refuses) takes moto's client path unchanged, so errors keep their AWS shapes.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("sfn_lambda_invoke")
_DIRECT_PARAMETERS = frozenset({"FunctionName", "Payload", "Qualifier"})
_RESPONSE_LIMIT = 6_000_000  # moto's LambdaResponse.invoke check, kept as it is
_TOO_LARGE = {
    "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    "errorType": "Function.ResponseSizeTooLarge",
}


def _backend_and_function(function_name: str, qualifier: str | None, region: str) -> tuple[Any, Any] | None:
    """The backend and function the client path would reach, or None where it might reach another.

    The client path calls the backend of the caller's account (moto's `MOTO_ACCOUNT_ID`, else its
    default) in the state machine's region, whatever an ARN names; an ARN naming another region or
    account is left to it.
    """
    from moto.awslambda.utils import get_backend
    from moto.core.models import DEFAULT_ACCOUNT_ID

    account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    if function_name.startswith("arn:"):
        parts = function_name.split(":")
        if len(parts) < 7 or parts[3] != region or parts[4] != account:
            return None
    try:
        backend = get_backend(account, region)
        return backend, backend.get_function(function_name, qualifier)
    except Exception:  # nothing has run yet: the client path answers, with Lambda's error
        return None


def direct_invoke(parameters: dict[str, Any], region: str) -> dict[str, Any] | None:
    """The client's `invoke` response for a plain synchronous call, or None to take the client path."""
    from moto.core.exceptions import JsonRESTError

    if set(parameters) - _DIRECT_PARAMETERS or not isinstance(parameters.get("FunctionName"), str):
        return None
    name, qualifier = parameters["FunctionName"], parameters.get("Qualifier")
    found = _backend_and_function(name, qualifier, region)
    if found is None:
        return None
    backend, function = found
    response_headers: dict[str, Any] = {}
    try:
        payload = backend.invoke(name, qualifier, parameters.get("Payload"), {}, response_headers)
    except JsonRESTError:
        return None  # refused before running (bad payload): the client path gives the 400
    response: dict[str, Any] = {
        "StatusCode": 200,
        "ExecutedVersion": str(response_headers.get("x-amz-executed-version", function.version)),
    }
    if sys.getsizeof(payload) > _RESPONSE_LIMIT:
        response["FunctionError"], payload = "Unhandled", json.dumps(_TOO_LARGE).encode()
    elif "x-amz-function-error" in response_headers:
        response["FunctionError"] = response_headers["x-amz-function-error"]
    response["Payload"] = io.BytesIO(payload if isinstance(payload, bytes) else str(payload or "").encode())
    return response


def direct_first(
    original: Callable[..., dict[str, Any]], from_payload: Callable[[Any], Any]
) -> Callable[..., dict[str, Any]]:
    """`original` (moto's `_invoke_lambda_function`) behind the direct path; `from_payload` reads
    the payload as moto's does."""

    def _invoke_lambda_function(parameters: dict[str, Any], region: str, state_credentials: Any) -> Any:
        response = direct_invoke(parameters, region)
        if response is None:
            return original(parameters, region, state_credentials)
        response["Payload"] = from_payload(response["Payload"])
        return response

    return _invoke_lambda_function


def install() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    uninstall()
    original = lambda_eval_utils._invoke_lambda_function
    direct = direct_first(original, lambda_eval_utils._from_payload)
    _patches.replace(lambda_eval_utils, "_invoke_lambda_function", direct)


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
