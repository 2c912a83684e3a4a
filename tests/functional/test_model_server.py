"""The model server over real HTTP on loopback: the container contract, batches, errors, concurrency."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from scones.model_metadata import ModelMetadata
from scones.model_server import MAX_BATCH, MAX_REQUEST_BYTES
from scones.model_store import ModelStore
from service.endpoint import LocalEndpoint
from training.staging import StagedDataset

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def post(url: str, body: bytes, content_type: str | None) -> Reply:
    """POST over a fresh connection; 4xx/5xx replies are returned, not raised."""
    request = urllib.request.Request(url, data=body, method="POST")
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
            )
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def test_pngs(staged: StagedDataset) -> list[bytes]:
    """A few real staged test images of each class, in a fixed order."""
    root = staged.split_dir("test")
    paths = sorted(root.glob("bicycle/*.png"))[:4] + sorted(root.glob("motorcycle/*.png"))[:4]
    assert len(paths) == 8
    return [path.read_bytes() for path in paths]


@pytest.fixture(scope="module")
def invocations(endpoint: LocalEndpoint) -> str:
    return f"{endpoint.url}/invocations"


def predict_one(url: str, data: bytes, content_type: str = "image/png") -> list[float]:
    reply = post(url, data, content_type)
    assert reply.status == 200, reply.body
    result: list[float] = reply.json()
    return result


def assert_probabilities(value: Any) -> None:
    assert isinstance(value, list)
    assert len(value) == 2
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in value)
    assert sum(value) == pytest.approx(1.0, abs=1e-5)


def test_ping(endpoint: LocalEndpoint) -> None:
    with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=10) as response:
        assert response.status == 200


@pytest.mark.parametrize("content_type", ["image/png", "application/x-image", "image/png; charset=binary"])
def test_png_answers_probabilities_and_headers(
    invocations: str,
    test_pngs: list[bytes],
    small_model_metadata: ModelMetadata,
    content_type: str,
) -> None:
    reply = post(invocations, test_pngs[0], content_type)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert_probabilities(reply.json())
    version = small_model_metadata.version
    assert reply.headers["x-model-version"] == version
    assert reply.headers["x-label-order"] == "bicycle,motorcycle"
    attributes = reply.headers["x-amzn-sagemaker-custom-attributes"]
    assert f"model-version={version}" in attributes.split(";")
    assert "label-order=bicycle,motorcycle" in attributes.split(";")


def test_jpeg_answers_probabilities(invocations: str, test_pngs: list[bytes]) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(test_pngs[0])).convert("RGB").save(buffer, format="JPEG", quality=95)
    jpeg = buffer.getvalue()
    assert jpeg[:2] == b"\xff\xd8"
    result = predict_one(invocations, jpeg, "image/jpeg")
    assert_probabilities(result)
    # The same picture, only lossy-compressed: the answer moves a little, not to another class.
    png_result = predict_one(invocations, test_pngs[0])
    assert max(abs(a - b) for a, b in zip(result, png_result, strict=True)) < 0.25


@pytest.mark.parametrize("form", ["instances", "list"])
def test_json_batch_matches_single_images(
    invocations: str, test_pngs: list[bytes], small_model_metadata: ModelMetadata, form: str
) -> None:
    singles = [predict_one(invocations, data) for data in test_pngs]
    encoded = [b64(data) for data in test_pngs]
    document: Any = {"instances": [{"b64": e} for e in encoded]} if form == "instances" else encoded
    reply = post(invocations, json.dumps(document).encode(), "application/json")
    assert reply.status == 200, reply.body
    result = reply.json()
    assert result["label_order"] == ["bicycle", "motorcycle"]
    assert result["model_version"] == small_model_metadata.version
    assert result["errors"] == [None] * len(test_pngs)
    assert len(result["predictions"]) == len(test_pngs)
    for batched, single in zip(result["predictions"], singles, strict=True):
        assert_probabilities(batched)
        assert batched == pytest.approx(single, abs=1e-5)
    assert reply.headers["x-model-version"] == small_model_metadata.version


def test_batch_with_one_garbage_item(invocations: str, test_pngs: list[bytes]) -> None:
    items = [b64(test_pngs[0]), b64(b"this is not an image at all"), b64(test_pngs[5])]
    reply = post(
        invocations, json.dumps({"instances": [{"b64": i} for i in items]}).encode(), "application/json"
    )
    assert reply.status == 200, reply.body
    result = reply.json()
    predictions, errors = result["predictions"], result["errors"]
    assert predictions[1] is None
    assert errors[1]["error"] == "not_an_image"
    assert errors[1]["message"]
    assert errors[0] is None
    assert errors[2] is None
    assert predictions[0] == pytest.approx(predict_one(invocations, test_pngs[0]), abs=1e-5)
    assert predictions[2] == pytest.approx(predict_one(invocations, test_pngs[5]), abs=1e-5)


def test_batch_of_max_size_is_accepted(invocations: str, test_pngs: list[bytes]) -> None:
    items = [b64(test_pngs[i % len(test_pngs)]) for i in range(MAX_BATCH)]
    reply = post(invocations, json.dumps(items).encode(), "application/json")
    assert reply.status == 200, reply.body
    assert len(reply.json()["predictions"]) == MAX_BATCH


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"\x89PNG...", "text/plain", 415, "unsupported_content_type"),
        (b"\x89PNG...", None, 415, "unsupported_content_type"),
        (b"GIF? no. just some bytes", "image/png", 400, "not_an_image"),
        (b"", "image/png", 400, "empty"),
        (b"", "image/jpeg", 400, "empty"),
        (b'{"instances": [', "application/json", 400, "bad_request"),
        (b"\xff\xd8\xff\xe0 a JPEG sent as JSON", "application/json", 400, "bad_request"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "bad_request"),
        (b"", "application/json", 400, "bad_request"),
        (b'{"instances": []}', "application/json", 400, "bad_request"),
        (b'{"instances": [{"b64": 5}]}', "application/json", 400, "bad_request"),
        (b'{"instances": [{"b64": "not base64!"}]}', "application/json", 400, "bad_request"),
        (b'{"something": "else"}', "application/json", 400, "bad_request"),
    ],
)
def test_errors(invocations: str, body: bytes, content_type: str | None, status: int, code: str) -> None:
    reply = post(invocations, body, content_type)
    assert reply.status == status, reply.body
    error = reply.json()
    assert error["error"] == code
    assert isinstance(error["message"], str)
    assert error["message"]


def test_truncated_png_is_rejected(invocations: str, test_pngs: list[bytes]) -> None:
    reply = post(invocations, test_pngs[0][: len(test_pngs[0]) // 2], "image/png")
    assert reply.status == 400
    assert reply.json()["error"] == "truncated"


def test_batch_over_the_maximum_is_rejected(invocations: str, test_pngs: list[bytes]) -> None:
    items = [b64(test_pngs[0])] * (MAX_BATCH + 1)
    reply = post(
        invocations, json.dumps({"instances": [{"b64": i} for i in items]}).encode(), "application/json"
    )
    assert reply.status == 400
    error = reply.json()
    assert error["error"] == "bad_request"
    assert str(MAX_BATCH) in error["message"]


def test_a_request_over_sagemakers_payload_limit_is_refused(invocations: str, test_pngs: list[bytes]) -> None:
    """SageMaker real-time endpoints take at most 6 MB: the container refuses more, unread."""
    oversized = test_pngs[0] + b"\0" * MAX_REQUEST_BYTES
    reply = post(invocations, oversized, "image/png")
    assert reply.status == 413 and reply.json()["error"] == "payload_too_large"
    batch = json.dumps([b64(test_pngs[0])] * 2).encode()
    assert len(batch) < MAX_REQUEST_BYTES and post(invocations, batch, "application/json").status == 200


def test_get_on_invocations_is_not_allowed(invocations: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(invocations, timeout=10)
    assert raised.value.code == 405


def test_concurrent_requests_match_sequential(endpoint: LocalEndpoint, test_pngs: list[bytes]) -> None:
    url = f"{endpoint.url}/invocations"
    expected = [predict_one(url, data) for data in test_pngs]

    def worker(thread: int) -> list[tuple[int, list[float], str]]:
        # One keep-alive connection per thread, as a real client pool would hold.
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=30)
        results = []
        try:
            for request in range(5):
                index = (thread + request) % len(test_pngs)
                connection.request(
                    "POST", "/invocations", body=test_pngs[index], headers={"Content-Type": "image/png"}
                )
                response = connection.getresponse()
                body = response.read()
                assert response.status == 200, body
                results.append((index, json.loads(body), response.headers["X-Model-Version"]))
        finally:
            connection.close()
        return results

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = [result for batch in pool.map(worker, range(16)) for result in batch]
    assert len(outcomes) == 16 * 5
    versions = {version for _, _, version in outcomes}
    assert len(versions) == 1
    for index, probabilities, _ in outcomes:
        assert probabilities == expected[index]


@contextlib.contextmanager
def scones_serve(environment: dict[str, str]) -> Iterator[int]:
    """`scones serve` as a child process on a free port, up (it answers /ping); yields the port.

    The port comes as SageMaker gives it to a container, in SAGEMAKER_BIND_TO_PORT."""
    from service.endpoint import free_port

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "scones"), "serve"],
        env=os.environ
        | {"SCONES_SERVE_HOST": "127.0.0.1", "SAGEMAKER_BIND_TO_PORT": str(port)}
        | environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None and time.monotonic() < deadline, "scones serve did not come up"
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()  # our own child, by PID
        server.wait(timeout=30)


def served_version(port: int, png: bytes) -> tuple[str, list[float]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=png, headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["X-Model-Version"], json.loads(answer.read())


def test_scones_serve_runs_as_a_sagemaker_container_would(small_model: Any, test_pngs: list[bytes]) -> None:
    """`scones serve` with no flags serves the model SageMaker extracts (SCONES_MODEL_DIR stands in for
    /opt/ml/model) on the port and host the container's environment gives."""
    with scones_serve({"SCONES_MODEL_DIR": str(small_model)}) as port:
        version, probabilities = served_version(port, test_pngs[0])
    assert len(probabilities) == 2 and abs(sum(probabilities) - 1) < 1e-4
    assert version == ModelMetadata.read(small_model).version, "the model from SCONES_MODEL_DIR"


def two_version_store(model: Path, root: Path) -> tuple[ModelStore, str, str]:
    """A store serving `model`, with a copy of it under another version published beside it."""
    store = ModelStore(root)
    first = ModelMetadata.read(model).version
    store.publish(model)
    second_dir = root.parent / f"{root.name}-second"
    shutil.copytree(model, second_dir)
    metadata = json.loads((second_dir / "metadata.json").read_text())
    metadata["version"] = second = first + "-b"
    (second_dir / "metadata.json").write_text(json.dumps(metadata))
    store.publish(second_dir, make_current=False)
    return store, first, second


def test_scones_serve_of_the_store_follows_a_promotion(
    small_model: Any, test_pngs: list[bytes], tmp_path: Path
) -> None:
    """Serving the store's current model, `scones serve` switches when `scones models promote` does."""
    store, first, second = two_version_store(small_model, tmp_path / "home" / "models")
    environment = {"SCONES_HOME": str(tmp_path / "home"), "SCONES_MODEL_DIR": str(tmp_path / "none")}
    with scones_serve(environment) as port:
        assert served_version(port, test_pngs[0])[0] == first
        store.set_current(second)
        deadline = time.monotonic() + 15
        while (version := served_version(port, test_pngs[0])[0]) != second and time.monotonic() < deadline:
            time.sleep(0.2)
        assert version == second


def test_a_promotion_is_loaded_before_any_request_asks_for_it(small_model: Any, tmp_path: Path) -> None:
    """The endpoint follows the store on a thread of its own: requests that come later, even a while
    later, all meet the promoted model (a request-time check served the old one while it loaded)."""
    store, first, second = two_version_store(small_model, tmp_path / "models")
    with LocalEndpoint(store=store) as endpoint:
        assert (model := endpoint.slot.ready()) is not None and model.version == first
        store.set_current(second)
        deadline = time.monotonic() + 30
        while (model := endpoint.slot.ready()) is not None and model.version != second:
            assert time.monotonic() < deadline, "the promoted model was not loaded without a request"
            time.sleep(0.05)
    assert model is not None and model.version == second


def test_promotion_and_rollback_swap_the_served_model_without_failing_a_request(
    small_model: Any, test_pngs: list[bytes], tmp_path: Any
) -> None:
    """Requests run on four threads while the store's current version changes twice: none fails, and
    the answers switch to the promoted version, then back."""
    import threading

    store, first, second = two_version_store(small_model, tmp_path / "models")

    seen: list[str] = []
    by_client: list[list[str]] = [[] for _ in range(4)]  # each client's answers, in its own order
    failures: list[str] = []
    stop = threading.Event()
    with LocalEndpoint(store=store) as endpoint:
        url = f"{endpoint.url}/invocations"

        def client(answers: list[str]) -> None:
            while not stop.is_set():
                request = urllib.request.Request(
                    url, data=test_pngs[0], headers={"Content-Type": "image/png"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        answers.append(answer.headers["X-Model-Version"])
                        seen.append(answers[-1])
                except Exception as error:
                    failures.append(repr(error))

        threads = [threading.Thread(target=client, args=(answers,)) for answers in by_client]
        for thread in threads:
            thread.start()

        def wait_for(version: str) -> bool:
            """Every client's latest answer is from `version` (each has sent one since the swap)."""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all(answers and answers[-1] == version for answers in by_client):
                    return True
                time.sleep(0.05)
            return False

        deadline = time.monotonic() + 60
        while not all(by_client) and time.monotonic() < deadline:  # every client answered once first
            time.sleep(0.02)
        store.set_current(second)
        promoted = wait_for(second)
        store.rollback()
        rolled_back = wait_for(first)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert failures == []
    assert promoted, f"not every client was answered by the promoted model: {by_client}"
    assert rolled_back, f"not every client was answered by the first model again: {by_client}"
    assert all(answers[-1] == first for answers in by_client)
    # One client sends a request only after its previous answer: its answers change exactly twice
    # (first → second → first), never back and forth. Across clients, answers still in flight at a
    # swap arrive interleaved with new ones, so the shared order says nothing about flapping.
    assert len(seen) > 20
    for answers in by_client:
        changes = sum(1 for n in range(1, len(answers)) if answers[n] != answers[n - 1])
        assert changes <= 2, f"a client saw the served model flap: {answers}"


def test_an_outage_ends_with_the_endpoint_serving_again_though_a_request_was_in_flight(
    small_model: Path, test_pngs: list[bytes]
) -> None:
    """uvicorn waits for requests in flight before it exits: `go_down` must still end the server, and
    `come_back` must not take a server still shutting down for a serving one. (A load test's outage
    once left the stack down for good: come_back returned at once, then the old server exited.)"""
    import threading

    with LocalEndpoint(model_dir=small_model) as endpoint:
        endpoint.faults.set("slow", count=1, delay_s=12)
        slow = threading.Thread(target=lambda: post(f"{endpoint.url}/invocations", test_pngs[0], "image/png"))
        slow.start()
        deadline = time.monotonic() + 30
        while endpoint.faults.injected < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert endpoint.faults.injected == 1, "the slow request reached the server: it is in flight"
        endpoint.go_down()
        assert not endpoint.serving
        endpoint.come_back()
        slow.join(timeout=30)  # the old server is gone for good by now
        with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=10) as answer:
            assert answer.status == 200, "serving after the outage"
