"""SageMaker Runtime's InvokeEndpoint, forwarded to a real model server: an endpoint name maps to a local URL.

moto's `sagemaker-runtime` returns canned data ("body", "content_type", ...) for any endpoint name,
and its response layer decodes the request body as UTF-8 (an image body fails) and hands the
backend only a digest of the request, without the ContentType. `install(registry)` therefore
replaces the response layer's `SageMakerRuntimeResponse.invoke_endpoint` (and keeps the raw body):

- the endpoint name is looked up in an `EndpointRegistry` (name → base URL of a model server,
  e.g. "scones-classifier" → "http://127.0.0.1:8081"); an unknown name is SageMaker's
  400 ValidationError "Endpoint <name> of account <account> not found.";
- the body is POSTed unchanged with its `Content-Type`, `Accept` and the `X-Amzn-SageMaker-*`
  headers (CustomAttributes, TargetModel, InferenceId, ...) to `<url>/endpoints/<name>/invocations`,
  the route the model server exposes with SageMaker Runtime's semantics;
- a 2xx answer becomes the InvokeEndpoint response: Body, ContentType, CustomAttributes and
  InvokedProductionVariant ("AllTraffic", SageMaker's default variant name);
- an error the server already shaped as SageMaker's (it sets `x-amzn-ErrorType`, as our model
  server's runtime route does) passes through unchanged; any other 4xx/5xx becomes SageMaker's 424
  ModelError carrying OriginalStatusCode and OriginalMessage; an unreachable server or a timeout
  (SageMaker's is 60 s) is a 424 ModelError too, as SageMaker reports a container that does not answer.

So boto3 and the AWS CLI configured with nothing but `AWS_ENDPOINT_URL` reach the model through moto.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

from service.moto_adapters._patching import PatchSet

if TYPE_CHECKING:
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

MOTO_VERSION = "5.2.5"

DEFAULT_TIMEOUT_S: Final = 60.0  # SageMaker real-time endpoints' invocation timeout
DEFAULT_VARIANT: Final = "AllTraffic"
VALIDATION_ERROR: Final = "ValidationError:http://internal.amazon.com/coral/com.amazon.coral.validate/"
MODEL_ERROR: Final = "ModelError:http://internal.amazon.com/"
_FORWARDED_HEADERS: Final = ("Content-Type", "Accept")

_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
_patches = PatchSet("sagemaker_runtime")


class _State:
    installed: EndpointRegistry | None = None


_state = _State()

Response = tuple[int, dict[str, str], bytes | str]


class EndpointRegistry:
    """Endpoint name → model server base URL; thread-safe, changeable while the stack runs."""

    def __init__(
        self, endpoints: Mapping[str, str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.timeout_s = timeout_s
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()
        for name, url in (endpoints or {}).items():
            self.register(name, url)

    def register(self, name: str, url: str) -> None:
        with self._lock:
            self._urls[name] = url.rstrip("/")

    def unregister(self, name: str) -> None:
        with self._lock:
            self._urls.pop(name, None)

    def resolve(self, name: str) -> str | None:
        with self._lock:
            return self._urls.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._urls)


def _json_error(status: int, error_type: str, document: Mapping[str, Any]) -> Response:
    # moto's response layer takes the HTTP status from the "status" header, not the tuple
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type, "status": str(status)}
    return status, headers, json.dumps(document)


def _model_error(
    endpoint: str,
    message: str,
    *,
    account: str,
    region: str,
    original_status: int | None = None,
    original_message: str = "",
) -> Response:
    document: dict[str, Any] = {
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL"
        if original_status is not None and original_status < 500
        else "SERVER_ERROR_FROM_MODEL",
        "Message": message,
        "LogStreamArn": f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{endpoint}",
    }
    if original_status is not None:
        document["OriginalStatusCode"] = original_status
        document["OriginalMessage"] = original_message
    return _json_error(424, MODEL_ERROR, document)


def forward(
    registry: EndpointRegistry,
    endpoint: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    account: str,
    region: str,
) -> Response:
    """One InvokeEndpoint: (status, headers, body) as moto's response layer returns them."""
    url = registry.resolve(endpoint)
    if url is None:
        return _json_error(
            400, VALIDATION_ERROR, {"message": f"Endpoint {endpoint} of account {account} not found."}
        )
    by_name = {name.lower(): value for name, value in headers.items()}
    outgoing = {name: by_name[name.lower()] for name in _FORWARDED_HEADERS if by_name.get(name.lower())}
    outgoing.update(
        {name: value for name, value in headers.items() if name.lower().startswith("x-amzn-sagemaker-")}
    )
    request = urllib.request.Request(
        f"{url}/endpoints/{quote(endpoint, safe='')}/invocations", data=body, headers=outgoing, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=registry.timeout_s) as answer:
            content = answer.read()
            reply_headers = {
                "Content-Type": answer.headers.get("Content-Type") or "application/octet-stream",
                "x-Amzn-Invoked-Production-Variant": DEFAULT_VARIANT,
            }
            attributes = answer.headers.get("X-Amzn-SageMaker-Custom-Attributes")
            if attributes:
                reply_headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
            return 200, reply_headers, content
    except urllib.error.HTTPError as error:
        content = error.read()
        error_type = error.headers.get("x-amzn-ErrorType")
        if error_type:  # already SageMaker-shaped by the model server: pass it through
            passed = {"Content-Type": error.headers.get("Content-Type") or "application/json"}
            passed.update({"x-amzn-ErrorType": error_type, "status": str(error.code)})
            return error.code, passed, content
        original = content.decode(errors="replace")
        kind = "client" if error.code < 500 else "server"
        return _model_error(
            endpoint,
            f'Received {kind} error ({error.code}) from primary with message "{original}". '
            f"See {endpoint} logs for more information.",
            account=account,
            region=region,
            original_status=error.code,
            original_message=original,
        )
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or isinstance(error, TimeoutError):
            message = "Your invocation timed out while waiting for a response from container primary."
        else:
            message = f"Could not reach the model container primary at {url}: {reason}"
        return _model_error(endpoint, message, account=account, region=region)


def install(registry: EndpointRegistry | Mapping[str, str]) -> EndpointRegistry:
    """Forward InvokeEndpoint to the registry's model servers; returns the registry (changeable later)."""
    uninstall()
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    endpoints = registry if isinstance(registry, EndpointRegistry) else EndpointRegistry(registry)

    def invoke_endpoint(response: SageMakerRuntimeResponse) -> Response:
        name = unquote(response.path.split("?")[0].rstrip("/").split("/")[-2])
        body = (
            response.raw_body if isinstance(response.raw_body, bytes) else str(response.body or "").encode()
        )
        headers = {str(key): str(value) for key, value in response.headers.items()}
        return forward(
            endpoints, name, body, headers, account=response.current_account, region=response.region
        )

    _patches.replace(SageMakerRuntimeResponse, "invoke_endpoint", invoke_endpoint)
    _patches.replace(SageMakerRuntimeResponse, "use_raw_body", True)  # image bodies are not UTF-8
    _state.installed = endpoints
    return endpoints


def uninstall() -> None:
    _patches.restore()
    _state.installed = None


def installed_registry() -> EndpointRegistry | None:
    return _state.installed


def is_installed() -> bool:
    return _patches.active
