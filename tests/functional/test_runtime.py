"""boto3's `sagemaker-runtime` client against the local endpoint, and data capture into (moto) S3."""

from __future__ import annotations

import base64
import json
import random
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError

from scones.data_capture import CaptureConfig, DataCapture
from scones.model_metadata import ModelMetadata
from service.endpoint import LocalEndpoint
from tests.conftest import aws_client
from training.staging import StagedDataset

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime(endpoint: LocalEndpoint) -> SageMakerRuntimeClient:
    return cast("SageMakerRuntimeClient", aws_client("sagemaker-runtime", endpoint.url))


@pytest.fixture(scope="module")
def s3(moto_endpoint_url: str) -> S3Client:
    return cast("S3Client", aws_client("s3", moto_endpoint_url))


@pytest.fixture(scope="module")
def test_pngs(staged: StagedDataset) -> list[bytes]:
    root = staged.split_dir("test")
    paths = sorted(root.glob("bicycle/*.png"))[:3] + sorted(root.glob("motorcycle/*.png"))[:3]
    return [path.read_bytes() for path in paths]


def test_invoke_endpoint_returns_probabilities(
    runtime: SageMakerRuntimeClient,
    endpoint: LocalEndpoint,
    test_pngs: list[bytes],
    small_model_metadata: ModelMetadata,
) -> None:
    response = runtime.invoke_endpoint(EndpointName=endpoint.name, ContentType="image/png", Body=test_pngs[0])
    probabilities = json.loads(response["Body"].read())
    assert len(probabilities) == 2
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert response["ContentType"] == "application/json"
    version = small_model_metadata.version
    assert f"model-version={version}" in response["CustomAttributes"].split(";")
    # The same answer the container route gives.
    request = urllib.request.Request(
        f"{endpoint.url}/invocations", data=test_pngs[0], headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=30) as direct:
        assert json.loads(direct.read()) == probabilities


def test_invoke_endpoint_with_a_json_batch(
    runtime: SageMakerRuntimeClient, endpoint: LocalEndpoint, test_pngs: list[bytes]
) -> None:
    body = json.dumps({"instances": [{"b64": base64.b64encode(d).decode()} for d in test_pngs]})
    response = runtime.invoke_endpoint(
        EndpointName=endpoint.name, ContentType="application/json", Accept="application/json", Body=body
    )
    result = json.loads(response["Body"].read())
    assert len(result["predictions"]) == len(test_pngs)
    assert result["errors"] == [None] * len(test_pngs)


def test_unknown_endpoint_is_a_validation_error(runtime: SageMakerRuntimeClient) -> None:
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="image/png", Body=b"x")
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert re.fullmatch(r"Endpoint no-such-endpoint of account \d{12} not found\.", error["Message"])
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_garbage_body_is_a_model_error(runtime: SageMakerRuntimeClient, endpoint: LocalEndpoint) -> None:
    with pytest.raises(runtime.exceptions.ModelError) as raised:
        runtime.invoke_endpoint(EndpointName=endpoint.name, ContentType="image/png", Body=b"not an image")
    response: Any = raised.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 400
    assert json.loads(response["OriginalMessage"])["error"] == "not_an_image"
    assert endpoint.name in response["LogStreamArn"]


def test_unsupported_content_type_is_a_model_error_with_415(
    runtime: SageMakerRuntimeClient, endpoint: LocalEndpoint
) -> None:
    with pytest.raises(runtime.exceptions.ModelError) as raised:
        runtime.invoke_endpoint(EndpointName=endpoint.name, ContentType="text/csv", Body=b"1,2,3")
    response: Any = raised.value.response
    assert response["OriginalStatusCode"] == 415


# --- data capture -------------------------------------------------------------------------------------

KEY_PATTERN = (
    r"datacapture/{name}/AllTraffic/(\d{{4}})/(\d{{2}})/(\d{{2}})/(\d{{2}})/"
    r"\d{{2}}-\d{{2}}-\d{{3}}-[0-9a-f-]{{36}}\.jsonl"
)


@pytest.fixture
def bucket(s3: S3Client) -> Iterator[str]:
    name = f"capture-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name


def capture_lines(s3: S3Client, bucket: str, name: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Keys under the endpoint's capture prefix and every JSON line in them."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="datacapture/")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    lines: list[dict[str, Any]] = []
    for key in keys:
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        assert text.endswith("\n")
        lines.extend(json.loads(line) for line in text.splitlines())
    return keys, lines


def invoke_direct(endpoint: LocalEndpoint, data: bytes) -> str:
    request = urllib.request.Request(
        f"{endpoint.url}/invocations", data=data, headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text: str = response.read().decode()
        return text


def test_data_capture_writes_sagemaker_jsonl(
    s3: S3Client, bucket: str, small_model: Path, test_pngs: list[bytes]
) -> None:
    name = "capture-endpoint"
    capture = DataCapture(CaptureConfig(bucket=bucket, endpoint_name=name, flush_interval_s=0.2), s3)
    started = datetime.now(UTC)
    sent: list[tuple[bytes, str]] = []
    with LocalEndpoint(name=name, model_dir=small_model, capture=capture) as running:
        runtime = cast("SageMakerRuntimeClient", aws_client("sagemaker-runtime", running.url))
        for data in test_pngs:
            sent.append((data, invoke_direct(running, data)))
        for data in test_pngs[:2]:  # and through the runtime route
            response = runtime.invoke_endpoint(EndpointName=name, ContentType="image/png", Body=data)
            sent.append((data, response["Body"].read().decode()))
        # a rejected request is not captured
        with pytest.raises(runtime.exceptions.ModelError):
            runtime.invoke_endpoint(EndpointName=name, ContentType="image/png", Body=b"garbage")
    finished = datetime.now(UTC)

    keys, lines = capture_lines(s3, bucket, name)
    assert keys
    hours = {f"{t:%Y/%m/%d/%H}" for t in (started, finished)}
    for key in keys:
        match = re.fullmatch(KEY_PATTERN.format(name=name), key)
        assert match, key
        assert "/".join(match.groups()) in hours
    assert len(lines) == len(sent)

    seen_ids = set()
    captured = []
    for line in lines:
        assert line["eventVersion"] == "0"
        event_input = line["captureData"]["endpointInput"]
        event_output = line["captureData"]["endpointOutput"]
        assert event_input["observedContentType"] == "image/png"
        assert event_input["mode"] == "INPUT"
        assert event_input["encoding"] == "BASE64"
        assert event_output["observedContentType"] == "application/json"
        assert event_output["mode"] == "OUTPUT"
        assert event_output["encoding"] == "JSON"
        metadata = line["eventMetadata"]
        assert str(uuid.UUID(metadata["eventId"])) == metadata["eventId"]
        seen_ids.add(metadata["eventId"])
        inference_time = datetime.strptime(metadata["inferenceTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC
        )
        assert started - timedelta(seconds=1) <= inference_time <= finished + timedelta(seconds=1)
        captured.append((base64.b64decode(event_input["data"]), event_output["data"]))
    assert len(seen_ids) == len(lines)
    # Each request's bytes and the exact response body, in some order (flushes may interleave).
    assert sorted(captured) == sorted(sent)
    for _, output in captured:
        assert len(json.loads(output)) == 2


def test_sampling_zero_writes_nothing(
    s3: S3Client, bucket: str, small_model: Path, test_pngs: list[bytes]
) -> None:
    name = "unsampled-endpoint"
    config = CaptureConfig(bucket=bucket, endpoint_name=name, sampling_percentage=0, flush_interval_s=0.2)
    capture = DataCapture(config, s3, rng=random.Random(7))
    with LocalEndpoint(name=name, model_dir=small_model, capture=capture) as running:
        for data in test_pngs:
            invoke_direct(running, data)
    assert capture_lines(s3, bucket, name) == ([], [])


def test_sampling_keeps_the_seeded_share(
    s3: S3Client, bucket: str, small_model: Path, test_pngs: list[bytes]
) -> None:
    name = "sampled-endpoint"
    requests = 30
    config = CaptureConfig(bucket=bucket, endpoint_name=name, sampling_percentage=50, flush_interval_s=0.2)
    capture = DataCapture(config, s3, rng=random.Random(11))
    replay = random.Random(11)
    expected = sum(replay.uniform(0.0, 100.0) < 50 for _ in range(requests))
    assert 0 < expected < requests
    with LocalEndpoint(name=name, model_dir=small_model, capture=capture) as running:
        for index in range(requests):
            invoke_direct(running, test_pngs[index % len(test_pngs)])
    _, lines = capture_lines(s3, bucket, name)
    assert len(lines) == expected


def test_capture_failures_never_fail_requests(
    s3: S3Client, small_model: Path, test_pngs: list[bytes]
) -> None:
    """Fault injection: the capture bucket does not exist, and the buffer fills on every request."""
    name = "broken-capture-endpoint"
    config = CaptureConfig(
        bucket=f"missing-{uuid.uuid4().hex[:12]}", endpoint_name=name, flush_interval_s=0.2, max_buffered=1
    )
    capture = DataCapture(config, s3)
    with LocalEndpoint(name=name, model_dir=small_model, capture=capture) as running:
        for data in test_pngs:
            assert len(json.loads(invoke_direct(running, data))) == 2
    # leaving the block stopped the endpoint and closed the capture without raising


def test_full_buffer_is_written_without_waiting_for_the_interval(
    s3: S3Client, bucket: str, small_model: Path, test_pngs: list[bytes]
) -> None:
    name = "busy-endpoint"
    config = CaptureConfig(bucket=bucket, endpoint_name=name, flush_interval_s=3600, max_buffered=2)
    capture = DataCapture(config, s3)
    with LocalEndpoint(name=name, model_dir=small_model, capture=capture) as running:
        for data in test_pngs[:4]:
            invoke_direct(running, data)
        deadline = time.monotonic() + 10
        while len(capture_lines(s3, bucket, name)[1]) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        keys, lines = capture_lines(s3, bucket, name)
    assert len(lines) == 4
    assert len(keys) >= 2
