"""The model server: SageMaker's container contract (`GET /ping`, `POST /invocations`) plus the local
`sagemaker-runtime` route (`POST /endpoints/<name>/invocations`) that boto3's `invoke_endpoint` uses.

One image (`image/png`, `image/jpeg`, `application/x-image`) answers `[p_bicycle, p_motorcycle]`,
like the original endpoint; `application/json` takes a batch. The label order and model version come
back in headers, including `X-Amzn-SageMaker-Custom-Attributes`, which SageMaker passes through.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scones.data_capture import DataCapture
from scones.faults import FaultSwitch
from scones.inference import OnnxClassifier
from scones.preprocessing import ImageRejected, preprocess

IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/jpg", "application/x-image", "image/webp"})
JSON_TYPE: Final = "application/json"
MAX_BATCH: Final = 64
# SageMaker real-time InvokeEndpoint takes at most 6 MB: the container refuses more, locally as on AWS
MAX_REQUEST_BYTES: Final = 6 * 1024 * 1024
ACCOUNT_ID: Final = "123456789012"
_log = logging.getLogger(__name__)


class ModelSlot:
    """The model an endpoint serves: loaded on first use, swapped atomically while requests are in flight.

    With `current_version`, the slot follows a version source (the model store's CURRENT pointer):
    every `check_interval_s` it looks whether another version is current, loads it and swaps it in.
    After `follow()` a thread of its own does that, so a promotion serves about a check interval plus
    a load after it, and no request waits for a load; without it, the first request after each
    interval does it. Requests that already hold the old model finish on it; none fails.
    """

    def __init__(
        self,
        loader: Callable[[], OnnxClassifier],
        *,
        current_version: Callable[[], str] | None = None,
        check_interval_s: float = 1.0,
    ) -> None:
        self._loader = loader
        self._current_version = current_version
        self._check_interval_s = check_interval_s
        self._checked_at = 0.0
        self._model: OnnxClassifier | None = None
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stopped = threading.Event()

    def follow(self) -> None:
        """Look for a newly current version on a thread of its own (until `close`)."""
        if self._current_version is None or self._watcher is not None:
            return
        self._stopped.clear()
        self._watcher = threading.Thread(target=self._watch, name="model-slot-follow", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stopped.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)  # a load in progress finishes first
            if not self._watcher.is_alive():
                self._watcher = None  # else `follow` must not start a second one beside it

    def _watch(self) -> None:
        while not self._stopped.wait(self._check_interval_s):
            with self._lock:
                self._swap_if_stale()

    def ready(self) -> OnnxClassifier | None:
        """The loaded model when `get` would neither load nor look for a new version; else None."""
        model = self._model
        return model if model is not None and not self._due() else None

    def get(self) -> OnnxClassifier:
        model = self._model
        if model is None or self._due():
            with self._lock:
                if self._model is None:
                    self._model = self._loader()
                else:
                    self._swap_if_stale()
                model = self._model
        return model

    def _swap_if_stale(self) -> None:
        """Load and swap in the current version if it is another one (the caller holds the lock)."""
        if self._model is None or not self._stale():
            return
        try:
            self._model = self._loader()
        except Exception:  # a broken new version: keep serving the one that works
            _log.exception("could not load the newly current model; still serving %s", self._model.version)

    def _due(self) -> bool:
        return (
            self._current_version is not None
            and self._watcher is None  # a follower thread does the looking
            and time.monotonic() - self._checked_at >= self._check_interval_s
        )

    def _stale(self) -> bool:
        if self._current_version is None or self._model is None:
            return False
        self._checked_at = time.monotonic()
        try:
            return self._current_version() != self._model.version
        except Exception:  # a missing or unreadable pointer keeps the model being served
            return False


@dataclass
class Endpoint:
    name: str
    slot: ModelSlot
    capture: DataCapture | None = None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _headers(model: OnnxClassifier) -> dict[str, str]:
    labels = ",".join(model.labels)
    return {
        "X-Model-Version": model.version,
        "X-Label-Order": labels,
        "X-Amzn-SageMaker-Custom-Attributes": f"model-version={model.version};label-order={labels}",
    }


def _decode_batch(body: bytes) -> list[bytes]:
    """`{"instances": [{"b64": "..."}, ...]}` or a list of base64 strings."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"the body is not JSON ({error.msg})") from None
    except UnicodeDecodeError:
        raise ValueError("the body is not JSON (not UTF-8 text)") from None
    except RecursionError:  # deeply nested arrays: a client error, not a server fault
        raise ValueError("the body is not JSON we accept (nested too deeply)") from None
    instances = document.get("instances") if isinstance(document, dict) else document
    if not isinstance(instances, list) or not instances:
        raise ValueError(
            'expected {"instances": [{"b64": "<base64 image>"}, ...]} or a list of base64 strings'
        )
    if len(instances) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH} images, got {len(instances)}")
    images = []
    for index, instance in enumerate(instances):
        encoded = instance.get("b64") if isinstance(instance, dict) else instance
        if not isinstance(encoded, str):
            raise ValueError(f"instance {index} has no base64 string")
        try:
            images.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            raise ValueError(f"instance {index} is not valid base64") from None
    return images


def _predict_one(model: OnnxClassifier, body: bytes) -> list[float]:
    probabilities = model.predict_inputs(preprocess(body, model.preprocess_config)[np.newaxis])
    return [round(float(p), 6) for p in probabilities[0]]


def _predict_batch(model: OnnxClassifier, images: list[bytes]) -> dict[str, Any]:
    inputs: list[np.ndarray[Any, Any]] = []
    errors: list[dict[str, str] | None] = []
    valid: list[int] = []
    for index, data in enumerate(images):
        try:
            inputs.append(preprocess(data, model.preprocess_config))
            valid.append(index)
            errors.append(None)
        except ImageRejected as rejected:
            errors.append({"error": rejected.reason, "message": rejected.detail})
    predictions: list[list[float] | None] = [None] * len(images)
    if inputs:
        for index, row in zip(valid, model.predict_inputs(np.stack(inputs)), strict=True):
            predictions[index] = [round(float(p), 6) for p in row]
    return {
        "predictions": predictions,
        "errors": errors,
        "label_order": model.labels,
        "model_version": model.version,
    }


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is over `limit` bytes: the rest is read and dropped (a
    client still sending would see a reset connection instead of the answer), up to 4 x `limit`."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > 4 * limit
    chunks: list[bytes] = []
    size = 0
    if not too_large:
        async for chunk in request.stream():
            size += len(chunk)
            if size > 4 * limit:
                break
            if size <= limit:
                chunks.append(chunk)
    return b"".join(chunks) if size <= limit and not too_large else None


async def invoke(endpoint: Endpoint, request: Request) -> Response:
    """The container's `/invocations`: validate, preprocess, run the model, capture."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _bounded_body(request, MAX_REQUEST_BYTES)
    if body is None:
        return _error(413, "payload_too_large", f"a request holds at most {MAX_REQUEST_BYTES} bytes")
    model = endpoint.slot.ready()
    if model is None:  # a load or version check: on the thread pool, never stalling the event loop
        try:
            model = await run_in_threadpool(endpoint.slot.get)
        except Exception as error:
            return _error(503, "model_unavailable", str(error))
    if content_type in IMAGE_TYPES:
        try:
            result: Any = await run_in_threadpool(_predict_one, model, body)
        except ImageRejected as rejected:
            return _error(400, rejected.reason, rejected.detail)
    elif content_type == JSON_TYPE:
        try:  # parsing a large batch must not stall the event loop
            images = await run_in_threadpool(_decode_batch, body)
        except ValueError as error:
            return _error(400, "bad_request", str(error))
        result = await run_in_threadpool(_predict_batch, model, images)
    else:
        return _error(
            415,
            "unsupported_content_type",
            f"{content_type or 'no content type'}; send an image or {JSON_TYPE}",
        )
    text = json.dumps(result, separators=(",", ":"))
    if endpoint.capture is not None:
        endpoint.capture.record(body, content_type, text)
    return Response(text, media_type=JSON_TYPE, headers=_headers(model))


def _sagemaker_model_error(response: Response, endpoint_name: str) -> Response:
    """How SageMaker runtime reports a container's 4xx/5xx: HTTP 424 ModelError with the original status."""
    original = bytes(response.body).decode(errors="replace")
    kind = "CLIENT" if response.status_code < 500 else "SERVER"
    body = {
        "ErrorCode": f"{kind}_ERROR_FROM_MODEL",
        "OriginalStatusCode": response.status_code,
        "OriginalMessage": original,
        "LogStreamArn": f"arn:aws:logs:local:{ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}",
        "Message": (
            f"Received {kind.lower()} error ({response.status_code}) from primary with message "
            f'"{original}". See {endpoint_name} logs for more information.'
        ),
    }
    return JSONResponse(
        body, status_code=424, headers={"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/"}
    )


async def injected_fault(faults: FaultSwitch | None, request: Request) -> Response | None:
    """The answer an armed fault gives instead of the model's (after its delay, for a slow one)."""
    fault = faults.take() if faults is not None else None
    if fault is None:
        return None
    await request.body()  # a real container reads the request before it is slow or fails
    if fault.mode == "slow":
        await asyncio.sleep(fault.delay_s)
        return None
    if fault.mode == "throttle":
        return JSONResponse(
            {"message": "Rate exceeded"},
            status_code=400,
            headers={"x-amzn-ErrorType": "ThrottlingException:"},
        )
    if fault.mode == "reject":
        return _error(400, "bad_request", "injected fault: the model refuses this request")
    return _error(500, "internal_error", "injected fault: the model container failed")


def create_app(endpoints: dict[str, Endpoint], default: str, faults: FaultSwitch | None = None) -> Starlette:
    """The ASGI app; `default` names the endpoint behind the container routes; `faults` injects failures."""

    async def ping(_: Request) -> Response:
        try:
            await run_in_threadpool(endpoints[default].slot.get)
        except Exception as error:
            return _error(503, "model_unavailable", str(error))
        return Response(status_code=200)

    async def invocations(request: Request) -> Response:
        if (failure := await injected_fault(faults, request)) is not None:
            return failure
        return await invoke(endpoints[default], request)

    async def runtime_invocations(request: Request) -> Response:
        name = request.path_params["name"]
        endpoint = endpoints.get(name)
        if endpoint is None:
            return JSONResponse(
                {"message": f"Endpoint {name} of account {ACCOUNT_ID} not found."},
                status_code=400,
                headers={
                    "x-amzn-ErrorType": "ValidationError:http://internal.amazon.com/coral/com.amazon.coral.validate/"
                },
            )
        failure = await injected_fault(faults, request)
        if failure is not None and "ThrottlingException" in failure.headers.get("x-amzn-ErrorType", ""):
            return failure  # throttling is the runtime's own answer, not the container's
        response = failure or await invoke(endpoint, request)
        return _sagemaker_model_error(response, name) if response.status_code >= 400 else response

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/endpoints/{name}/invocations", runtime_invocations, methods=["POST"]),
        ]
    )
