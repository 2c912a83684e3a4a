"""The workflow's step logic, run against in-memory fakes of its ports (fakes over mocks)."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field

import pytest
from PIL import Image

from scones.objects import ObjectRef, is_replay_execution
from scones.preprocessing import ImageRejected, PreprocessConfig
from scones.steps import (
    MAX_REPLAYS,
    ModelRejected,
    ObjectMissing,
    ObjectSuperseded,
    Prediction,
    RunInProgress,
    State,
    classify,
    filter_by_confidence,
    record_outcome,
    replay_run,
    run_payload,
    serialize,
    start_run,
    start_upload,
)
from tests.unit.fakes import MemoryStarter


@dataclass
class MemoryStore:
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    etags: dict[tuple[str, str], str] = field(default_factory=dict)  # the version a key holds, if set

    def read(
        self, bucket: str, key: str, max_bytes: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[int, bytes | None]:
        try:
            data = self.objects[(bucket, key)]
        except KeyError:
            raise ObjectMissing(f"s3://{bucket}/{key} does not exist") from None
        current = self.etags.get((bucket, key))
        if etag and current and etag != current:
            raise ObjectSuperseded(f"s3://{bucket}/{key} is no longer {etag}")
        return len(data), data if len(data) <= max_bytes else None

    def write_json(self, bucket: str, key: str, body: str) -> None:
        self.objects[(bucket, key)] = body.encode()

    def delete(self, bucket: str, key: str) -> None:
        self.objects.pop((bucket, key), None)


@dataclass
class FixedClassifier:
    probabilities: list[float]
    label_order: list[str] = field(default_factory=lambda: ["bicycle", "motorcycle"])
    seen: list[bytes] = field(default_factory=list)

    def classify(self, png: bytes) -> Prediction:
        self.seen.append(png)
        return Prediction(self.probabilities, self.label_order, "v-test")


def photo(width: int = 4000, height: int = 3000) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


OBJ = ObjectRef("bucket", "inbox/ride.jpg", "etag1", size=0)


def initial_state(obj: ObjectRef = OBJ) -> State:
    return {"object": obj.as_dict(), "received_at": "2026-11-24T00:00:00.000Z", "execution_id": "arn:exec:1"}


def test_duplicate_delivery_starts_one_run() -> None:
    starter = MemoryStarter()
    first = start_run(OBJ, starter)
    second = start_run(OBJ, starter)
    changed = start_run(ObjectRef(OBJ.bucket, OBJ.key, "etag2"), starter)
    assert first[1] is True and second == (first[0], False) and changed[1] is True
    payload = json.loads(starter.started[first[0]])
    assert payload["object"]["key"] == "inbox/ride.jpg" and payload["received_at"].endswith("Z")


def test_serialize_hands_on_a_small_thumbnail_not_the_photo() -> None:
    data = photo()
    store = MemoryStore({("bucket", "inbox/ride.jpg"): data})
    state = serialize(initial_state(), store, PreprocessConfig())
    assert len(json.dumps(state)) < 16 * 1024, "the state stays far below Step Functions' 256 KB"
    thumb = Image.open(io.BytesIO(base64.b64decode(state["image"]["thumbnail_png_b64"])))
    assert thumb.size == (32, 32) and thumb.format == "PNG"
    assert state["image"]["source"] == {"format": "JPEG", "mode": "RGB", "width": 4000, "height": 3000}
    assert state["image"]["bytes"] == len(data)
    assert state["object"] == initial_state()["object"] and state["timings_ms"]["serialize"] > 0


def test_serialize_rejects_too_large_objects_without_reading_them() -> None:
    store = MemoryStore({("bucket", "inbox/ride.jpg"): photo(64, 64)})
    with pytest.raises(ImageRejected) as rejected:
        serialize(initial_state(), store, PreprocessConfig(max_bytes=100))
    assert rejected.value.reason == "too_large"


def test_serialize_of_a_deleted_object_raises_object_missing() -> None:
    with pytest.raises(ObjectMissing):
        serialize(initial_state(), MemoryStore(), PreprocessConfig())


def test_serialize_reads_the_version_of_its_event_not_a_newer_one_under_the_same_key() -> None:
    """The key was overwritten before this run read it: the newer version has its own run, and this
    one must not classify the newer bytes as its own."""
    key = ("bucket", "inbox/ride.jpg")
    store = MemoryStore({key: photo(64, 64)}, etags={key: "etag2"})
    with pytest.raises(ObjectSuperseded):
        serialize(initial_state(), store, PreprocessConfig())  # the event's version is etag1
    store.etags[key] = "etag1"
    assert serialize(initial_state(), store, PreprocessConfig())["image"]["bytes"] > 0


def test_classify_drops_the_thumbnail_and_names_the_label() -> None:
    store = MemoryStore({("bucket", "inbox/ride.jpg"): photo(64, 64)})
    classifier = FixedClassifier([0.1, 0.9])
    state = classify(serialize(initial_state(), store, PreprocessConfig()), classifier)
    assert "thumbnail_png_b64" not in state["image"]
    assert state["classification"] == {
        "probabilities": {"bicycle": 0.1, "motorcycle": 0.9},
        "label": "motorcycle",
        "confidence": 0.9,
        "model_version": "v-test",
    }
    assert classifier.seen[0].startswith(b"\x89PNG")


@pytest.mark.parametrize("answer", [[float("nan"), 0.5], [0.7, 0.7], [-0.1, 1.1]])
def test_classify_refuses_an_answer_that_is_no_probability_distribution(answer: list[float]) -> None:
    """A broken model's NaN must not become a confidence, a metric and an accepted outcome."""
    store = MemoryStore({("bucket", "inbox/ride.jpg"): photo(64, 64)})
    state = serialize(initial_state(), store, PreprocessConfig())
    with pytest.raises(ModelRejected, match="not a probability distribution"):
        classify(state, FixedClassifier(answer))


def test_classify_refuses_an_endpoint_with_another_label_order() -> None:
    store = MemoryStore({("bucket", "inbox/ride.jpg"): photo(64, 64)})
    state = serialize(initial_state(), store, PreprocessConfig())
    with pytest.raises(ModelRejected, match="label order"):
        classify(state, FixedClassifier([0.1, 0.9], ["motorcycle", "bicycle"]))


@pytest.mark.parametrize(
    ("confidence", "outcome"), [(0.85, "accepted"), (0.8499, "review"), (0.99, "accepted")]
)
def test_filter_routes_on_the_threshold(confidence: float, outcome: str) -> None:
    state = initial_state() | {
        "classification": {
            "probabilities": {"bicycle": confidence, "motorcycle": 1 - confidence},
            "label": "bicycle",
            "confidence": confidence,
            "model_version": "v-test",
        },
        "timings_ms": {"serialize": 1.0, "classify": 2.0},
    }
    record = filter_by_confidence(state, 0.85)["record"]
    assert record["outcome"] == outcome
    assert record["threshold"] == 0.85 and record["execution_id"] == "arn:exec:1"
    assert record["timings_ms"] == {"serialize": 1.0, "classify": 2.0}


def test_record_writes_one_record_per_object_version() -> None:
    store = MemoryStore()
    state = initial_state() | {
        "record": {
            "outcome": "review",
            "bucket": "bucket",
            "key": "inbox/ride.jpg",
            "etag": "etag1",
            "confidence": 0.6,
        }
    }
    result = record_outcome(state, store)
    written = json.loads(store.objects[("bucket", "review/ride.jpg/etag1.json")])
    assert written["outcome"] == "review" and written["recorded_at"].endswith("Z")
    assert result["record"]["record_key"] == "review/ride.jpg/etag1.json"


def test_failures_are_recorded_with_a_reason_code_and_a_replay_reference() -> None:
    store = MemoryStore()
    cause = json.dumps({"errorMessage": "not_an_image: not a supported image", "errorType": "ImageRejected"})
    state = initial_state() | {"error": {"Error": "ImageRejected", "Cause": cause}}
    record = record_outcome(state, store)["record"]
    assert record["outcome"] == "failed" and record["reason"] == "not_an_image"
    assert record["replay"]["key"] == "inbox/ride.jpg"
    assert ("bucket", "failed/ride.jpg/etag1.json") in store.objects


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ({"Error": "ObjectMissing", "Cause": "{}"}, "object_missing"),
        ({"Error": "ObjectSuperseded", "Cause": "{}"}, "superseded"),
        (
            {
                "Error": "EndpointUnavailable",
                "Cause": '{"errorMessage": "down", "errorType": "EndpointUnavailable"}',
            },
            "endpoint_unavailable",
        ),
        ({"Error": "States.Timeout", "Cause": "Task timed out"}, "timeout"),
        ({"Error": "Sandbox.Timedout", "Cause": "Task timed out after 30.00 seconds"}, "timeout"),
        ({"Error": "ModelRejected", "Cause": '{"errorType": "ModelRejected"}'}, "model_rejected"),
        ({"Error": "TransientError", "Cause": '{"errorType": "TransientError"}'}, "transient_error"),
        ({"Error": "States.TaskFailed", "Cause": "the task failed"}, "task_failed"),
        ({"Error": "Lambda.TooManyRequestsException", "Cause": "Rate Exceeded."}, "throttled"),
        ({"Error": "EndpointThrottled", "Cause": "ThrottlingException"}, "throttled"),
        ({"Error": "SQS.SqsException", "Cause": "queue refused"}, "review_queue_unavailable"),
        ({"Error": "KeyError", "Cause": "boom"}, "internal_error"),
    ],
)
def test_failure_reason_codes(error: dict[str, str], reason: str) -> None:
    record = record_outcome(initial_state() | {"error": error}, MemoryStore())["record"]
    assert record["reason"] == reason


def test_a_replay_gets_the_next_free_replay_name() -> None:
    obj = ObjectRef("bucket", "inbox/ride.jpg", "etag1")
    starter = MemoryStarter()
    starter.start(obj.execution_name(), "{}")
    starter.finish(obj.execution_name(), "FAILED")
    first = replay_run(obj, starter)
    starter.finish(first, "FAILED")
    second = replay_run(obj, starter)
    assert first == obj.execution_name(replay=1) and second == obj.execution_name(replay=2)
    assert is_replay_execution(f"arn:aws:states:us-east-1:1:execution:machine:{second}")
    assert not is_replay_execution(f"arn:aws:states:us-east-1:1:execution:machine:{obj.execution_name()}")
    assert all(len(name) <= 80 for name in (first, second))


@pytest.mark.parametrize("running", [0, 1])
def test_no_replay_starts_while_a_run_of_the_upload_is_going(running: int) -> None:
    """`scones replay` run again before its replays ended, or beside the reconciler's replay: the
    running one records the outcome, a second would classify and notify twice."""
    obj = ObjectRef("bucket", "inbox/ride.jpg", "etag1")
    starter = MemoryStarter()
    for attempt in range(running + 1):
        starter.start(obj.execution_name(replay=attempt), "{}")
        starter.finish(obj.execution_name(replay=attempt), "FAILED")
    starter.finish(obj.execution_name(replay=running), "RUNNING")
    with pytest.raises(RunInProgress, match=f"its run {obj.execution_name(replay=running)} is still going"):
        replay_run(obj, starter)
    assert len(starter.started) == running + 1, "nothing started"
    starter.finish(obj.execution_name(replay=running), "FAILED")
    assert replay_run(obj, starter) == obj.execution_name(replay=running + 1)


@pytest.mark.parametrize(
    ("sequencer", "latest_status", "expected"),
    [
        ("0001", "FAILED", "duplicate"),  # the first event delivered again
        (None, "FAILED", "duplicate"),  # no sequencer: a retry cannot be told from a duplicate
        ("reconciler", "FAILED", "duplicate"),  # a run started without one: cannot be told either
        ("0002", "FAILED", "retried"),  # the same bytes put again after their run failed
        ("0002", "TIMED_OUT", "retried"),
        ("0002", "ABORTED", "retried"),
        ("0002", "RUNNING", "running"),
        ("0002", "SUCCEEDED", "recorded"),
    ],
)
def test_an_event_for_an_existing_run_is_told_apart_by_its_sequencer(
    sequencer: str | None, latest_status: str, expected: str
) -> None:
    first = ObjectRef(
        "bucket", "inbox/ride.jpg", "etag1", sequencer=None if sequencer == "reconciler" else "0001"
    )
    sequencer = "0002" if sequencer == "reconciler" else sequencer
    runs = MemoryStarter()
    assert start_upload(first, runs) == (first.execution_name(), "started")
    runs.finish(first.execution_name(), latest_status)
    again = ObjectRef(first.bucket, first.key, first.etag, sequencer=sequencer)
    name, what = start_upload(again, runs)
    assert what == expected
    if expected == "retried":
        assert name == first.execution_name(replay=1) and len(runs.started) == 2
        runs.finish(name, "FAILED")
        assert start_upload(again, runs)[1] == "duplicate", "the retry's own event delivered again"
    else:
        assert len(runs.started) == 1


def test_a_re_put_upload_with_any_run_still_going_starts_nothing() -> None:
    obj = ObjectRef("bucket", "inbox/ride.jpg", "etag1", sequencer="0001")
    runs = MemoryStarter()
    runs.start(obj.execution_name(), run_payload(obj))  # still going, though a replay ran since
    runs.start(obj.execution_name(replay=1), run_payload(obj))
    runs.finish(obj.execution_name(replay=1), "FAILED")
    again = ObjectRef(obj.bucket, obj.key, obj.etag, sequencer="0002")
    assert start_upload(again, runs) == (obj.execution_name(), "running")
    assert len(runs.started) == 2


def test_a_re_put_upload_whose_replay_names_are_all_used_is_left_to_people() -> None:
    obj = ObjectRef("bucket", "inbox/ride.jpg", "etag1", sequencer="0001")
    runs = MemoryStarter()
    for attempt in range(MAX_REPLAYS + 1):
        runs.start(obj.execution_name(replay=attempt), run_payload(obj))
        runs.finish(obj.execution_name(replay=attempt), "FAILED")
    again = ObjectRef(obj.bucket, obj.key, obj.etag, sequencer="0002")
    assert start_upload(again, runs) == (obj.execution_name(replay=MAX_REPLAYS), "exhausted")
    assert len(runs.started) == MAX_REPLAYS + 1


def test_a_successful_replay_replaces_the_failure_record() -> None:
    store = MemoryStore()
    failed = initial_state() | {"error": {"Error": "EndpointUnavailable", "Cause": "down"}}
    record_outcome(failed, store)
    assert ("bucket", "failed/ride.jpg/etag1.json") in store.objects
    obj = ObjectRef("bucket", "inbox/ride.jpg", "etag1")
    replayed = initial_state() | {
        "execution_id": f"arn:aws:states:us-east-1:1:execution:machine:{obj.execution_name(replay=1)}",
        "record": {"outcome": "accepted", "bucket": "bucket", "key": "inbox/ride.jpg", "etag": "etag1"},
    }
    record_outcome(replayed, store)
    assert set(store.objects) == {("bucket", "results/ride.jpg/etag1.json")}


def test_a_failed_replay_counts_the_failure_it_replaces_but_a_repeat_of_its_own_write_does_not() -> None:
    """The metrics equal the records: one failure record, however many failed runs wrote it."""
    obj = ObjectRef("bucket", "inbox/ride.jpg", "etag1")
    store, replaced, written = MemoryStore(), list[str](), list[State]()

    def run(replay: int, error: str) -> State:
        name = obj.execution_name(replay=replay)
        state = initial_state() | {
            "execution_id": f"arn:aws:states:us-east-1:1:execution:machine:{name}",
            "error": {"Error": error, "Cause": "{}"},
        }
        return record_outcome(state, store, on_written=written.append, on_failure_replaced=replaced.append)

    run(0, "EndpointUnavailable")
    assert (replaced, len(written)) == ([], 1)
    run(1, "TransientError")  # the replay failed too: its record replaces the first
    assert (replaced, len(written)) == (["endpoint_unavailable"], 2)
    again = run(1, "TransientError")  # the same run's record step again (its answer was lost)
    assert (replaced, len(written)) == (["endpoint_unavailable"], 2), "nothing written, nothing counted"
    assert again["record"]["reason"] == "transient_error"
    assert set(store.objects) == {("bucket", "failed/ride.jpg/etag1.json")}
    # counted: 2 failures, 1 replaced; standing: 1 failure record


def test_a_first_run_never_removes_another_record() -> None:
    store = MemoryStore()
    store.write_json("bucket", "failed/ride.jpg/etag1.json", "{}")
    state = initial_state() | {
        "record": {"outcome": "accepted", "bucket": "bucket", "key": "inbox/ride.jpg", "etag": "etag1"}
    }
    record_outcome(state, store)
    assert ("bucket", "failed/ride.jpg/etag1.json") in store.objects


def test_a_failure_after_a_written_result_keeps_the_result() -> None:
    """A record invocation that wrote its result but was reported failed (answer lost, time up)."""
    store = MemoryStore()
    accepted = initial_state() | {
        "record": {"outcome": "accepted", "bucket": "bucket", "key": "inbox/ride.jpg", "etag": "etag1"}
    }
    record_outcome(accepted, store)
    failed = initial_state() | {"error": {"Error": "Sandbox.Timedout", "Cause": "Task timed out"}}
    answer = record_outcome(failed, store)["record"]
    assert answer["outcome"] == "accepted" and answer["record_key"] == "results/ride.jpg/etag1.json"
    assert set(store.objects) == {("bucket", "results/ride.jpg/etag1.json")}, "no failure record beside it"


def test_every_way_an_upload_event_ends_has_its_metric_and_log_line() -> None:
    from typing import get_args

    from handlers.start import START_METRICS
    from scones.steps import UPLOAD_START_MESSAGES, UploadStart

    assert set(START_METRICS) == set(UPLOAD_START_MESSAGES) == set(get_args(UploadStart))
