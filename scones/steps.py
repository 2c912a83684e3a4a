"""The workflow's steps as plain functions: no boto3 at import, AWS access injected through small ports.

Each step takes the workflow state (a small JSON dict) and returns the next one. Errors that the
state machine retries or catches are raised as the exception classes below; their class names are
the `Error` names the ASL matches on.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, TypeVar

from scones.labels import LABELS
from scones.objects import ObjectRef, OutcomeKind, is_replay_execution
from scones.outcomes import OUTCOME_FOLDER, Outcome, OutcomeRecord, failure_reason
from scones.preprocessing import ImageRejected, PreprocessConfig, thumbnail_png

State = dict[str, Any]


class TransientError(Exception):
    """A dependency failed in a way worth retrying (throttling, 5xx, connection reset)."""


class ObjectMissing(Exception):
    """The object was deleted (or never existed) by the time it was read."""


class ObjectSuperseded(ObjectMissing):
    """The key holds a newer version than the one this run is for (that version has its own run)."""


class EndpointUnavailable(Exception):
    """The model endpoint is down, overloaded, timing out or answering 5xx: retried with backoff."""


class EndpointThrottled(EndpointUnavailable):
    """The endpoint refused for load (SageMaker's ThrottlingException, a 429): retried for minutes,
    as a burst past its capacity (a serverless endpoint's MaxConcurrency) needs."""


MAX_RECORD_BYTES = 1 << 20  # an outcome record is a few hundred bytes


class ModelRejected(Exception):
    """The endpoint refused our own thumbnail (a 4xx) or answered out of contract (label order, not
    probabilities): a model or deployment fault. Not retried at once (the same model answers the same);
    `scones replay` re-drives it once the model is fixed."""


class ObjectStore(Protocol):
    """The S3 operations the steps need."""

    def read(
        self, bucket: str, key: str, max_bytes: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[int, bytes | None]:
        """(size, bytes); bytes is None, unread, when the object is larger than `max_bytes`.

        With `version_id` that version is read; with `etag` only if the key still holds that version,
        else `ObjectSuperseded`.
        """
        ...

    def write_json(self, bucket: str, key: str, body: str) -> None: ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object if it exists."""
        ...


@dataclass(frozen=True)
class Prediction:
    probabilities: list[float]
    label_order: list[str]
    model_version: str


class ImageClassifier(Protocol):
    """The model endpoint: PNG bytes in, probabilities out."""

    def classify(self, png: bytes) -> Prediction: ...


class ExecutionStarter(Protocol):
    """Starts a workflow run; returns False when a run of that name already exists."""

    def start(self, name: str, payload: str) -> bool: ...


class RunInspector(ExecutionStarter, Protocol):
    """Also reads a run's status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED; None: no such run)."""

    def status(self, name: str) -> str | None: ...


class RunReader(RunInspector, Protocol):
    """Also reads a run's status and the input it was started with together (None: no such run)."""

    def describe(self, name: str) -> tuple[str, str] | None: ...


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """A timestamp the records carry (`now_iso`'s format, `Z` for UTC) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


MAX_REPLAYS: Final = 50


class ReplaysExhausted(RuntimeError):
    """Every replay name of an upload is used: it is left to people."""


class RunInProgress(RuntimeError):
    """A run of the upload is still going: a replay now would classify and notify twice."""

    def __init__(self, name: str) -> None:
        super().__init__(f"its run {name} is still going")
        self.name = name


def run_payload(obj: ObjectRef) -> str:
    """A workflow run's input: the object version and when it was received."""
    return json.dumps({"object": obj.as_dict(), "received_at": now_iso()})


def start_run(obj: ObjectRef, starter: ExecutionStarter) -> tuple[str, bool]:
    """Start the run for one object version under its deterministic name; (name, started)."""
    name = obj.execution_name()
    return name, starter.start(name, run_payload(obj))


Seen = TypeVar("Seen")  # what a look at one run says of it
UploadStart = Literal["started", "duplicate", "retried", "running", "recorded", "exhausted"]


UPLOAD_START_MESSAGES: Final[dict[UploadStart, str]] = {  # what start_upload did, said in one line
    "started": "workflow run started",
    "retried": "the same bytes put again after their run failed: replay started",
    "duplicate": "duplicate delivery: run already exists",
    "running": "the same bytes put again while their run is going: it records the outcome",
    "recorded": "the same bytes put again: their recorded outcome stands",
    "exhausted": "the same bytes put again, every replay name used: left to people",
}


def start_upload(obj: ObjectRef, runs: RunReader) -> tuple[str, UploadStart]:
    """Start the run an upload's event announces; (run name, what happened).

    "started": its first run. Its run exists already: "duplicate", another delivery of an event a
    run was started for (the same S3 `sequencer`), or one that cannot be told apart (the event, or a
    run started without one, as the reconciler's, has none: never run twice when unsure). Otherwise
    the same bytes were put again under the key (an unversioned bucket names runs by ETag): after
    its runs failed that is the uploader's retry, "retried" (a replay is started); while one runs,
    "running"; after one recorded an accepted or review outcome, "recorded" (that outcome stands);
    "exhausted" when every replay name is used.
    """
    name, started = start_run(obj, runs)
    if started:
        return name, "started"
    existing = upload_runs(obj, runs.describe)
    sequencers = {_sequencer_of(payload) for _, _, (_, payload) in existing}
    if not existing or obj.sequencer is None or obj.sequencer in sequencers or None in sequencers:
        return name, "duplicate"
    running = [run for _, run, (status, _) in existing if status == "RUNNING"]
    if running:
        return running[0], "running"
    attempt, latest, (status, _) = existing[-1]
    if status == "SUCCEEDED":
        return latest, "recorded"
    return _retry(obj, runs, attempt + 1, latest)


def _retry(obj: ObjectRef, runs: ExecutionStarter, attempt: int, latest: str) -> tuple[str, UploadStart]:
    """The replay of a re-put upload whose runs all failed."""
    try:
        return _start_replay(obj, runs, attempt), "retried"
    except RunInProgress as running:
        return running.name, "running"
    except ReplaysExhausted:
        return latest, "exhausted"


def _sequencer_of(payload: str | None) -> str | None:
    try:
        return json.loads(payload or "{}").get("object", {}).get("sequencer")  # type: ignore[no-any-return]
    except (ValueError, AttributeError):
        return None


def upload_runs(
    obj: ObjectRef, look: Callable[[str], Seen | None], *, max_replays: int = MAX_REPLAYS
) -> list[tuple[int, str, Seen]]:
    """The runs an upload has had, in the order they were named (its first run, then `-replay-n`):
    (n, name, what `look` says of it), up to the first replay name not used. A first run that is
    not there (Step Functions forgets closed runs after 90 days; the local stack, across restarts)
    is passed over."""
    found = []
    for attempt in range(max_replays + 1):
        name = obj.execution_name(replay=attempt)
        seen = look(name)
        if seen is None and attempt > 0:
            break
        if seen is not None:
            found.append((attempt, name, seen))
    return found


def _start_replay(
    obj: ObjectRef, runs: ExecutionStarter, attempt: int, max_replays: int = MAX_REPLAYS
) -> str:
    """Start replay `attempt` (1 or more); RunInProgress when someone started it just now."""
    if attempt > max_replays:
        raise ReplaysExhausted(f"{obj.identity} has been replayed {max_replays} times already")
    name = obj.execution_name(replay=attempt)
    if not runs.start(name, run_payload(obj)):
        raise RunInProgress(name)
    return name


def replay_run(obj: ObjectRef, runs: RunInspector, *, max_replays: int = MAX_REPLAYS) -> str:
    """Start a new run of an upload whose earlier run failed; the name of the run started.

    Replays are named `...-replay-n`, the first n not used yet; when that run records an accepted
    or review outcome it removes the failure record, so the upload still has exactly one outcome.
    While one of its runs is still going (a replay started by an earlier `scones replay` or by the
    reconciler) none is started: RunInProgress.
    """
    existing = upload_runs(obj, runs.status, max_replays=max_replays)
    running = [name for _, name, status in existing if status == "RUNNING"]
    if running:
        raise RunInProgress(running[0])
    return _start_replay(obj, runs, existing[-1][0] + 1 if existing else 1, max_replays)


def serialize(state: State, store: ObjectStore, config: PreprocessConfig) -> State:
    """Read and validate the object; hand on only a 32x32 PNG thumbnail and facts about the source."""
    started = time.perf_counter()
    obj = ObjectRef.from_dict(state["object"])
    # the version this run is for: the key may have been overwritten since the event
    size, data = store.read(obj.bucket, obj.key, config.max_bytes, etag=obj.etag, version_id=obj.version_id)
    if data is None:
        raise ImageRejected("too_large", f"{size} bytes is over the limit of {config.max_bytes}")
    png, info = thumbnail_png(data, config)
    return {
        **state,
        "image": {
            "thumbnail_png_b64": base64.b64encode(png).decode("ascii"),
            "source": {"format": info.format, "mode": info.mode, "width": info.width, "height": info.height},
            "bytes": size,
        },
        "timings_ms": {**state.get("timings_ms", {}), "serialize": elapsed_ms(started)},
    }


def classify(state: State, classifier: ImageClassifier) -> State:
    """Ask the endpoint; the thumbnail is dropped from the state once it has been classified."""
    started = time.perf_counter()
    png = base64.b64decode(state["image"]["thumbnail_png_b64"])
    prediction = classifier.classify(png)
    if prediction.label_order != list(LABELS) or len(prediction.probabilities) != len(LABELS):
        raise ModelRejected(
            f"the endpoint answers in label order {prediction.label_order}, expected {list(LABELS)}"
        )
    values = [float(p) for p in prediction.probabilities]
    if not all(0.0 <= p <= 1.0 for p in values) or abs(sum(values) - 1.0) > 1e-3:  # NaN fails too
        raise ModelRejected(f"the endpoint's answer {values} is not a probability distribution")
    probabilities = dict(zip(LABELS, (round(p, 6) for p in values), strict=True))
    label = max(probabilities, key=lambda name: probabilities[name])
    image = {key: value for key, value in state["image"].items() if key != "thumbnail_png_b64"}
    return {
        **state,
        "image": image,
        "classification": {
            "probabilities": probabilities,
            "label": label,
            "confidence": probabilities[label],
            "model_version": prediction.model_version,
        },
        "timings_ms": {**state.get("timings_ms", {}), "classify": elapsed_ms(started)},
    }


def _about(state: State) -> dict[str, Any]:
    """The fields every outcome record starts with: which object version, which run, since when."""
    obj = ObjectRef.from_dict(state["object"])
    return {
        "bucket": obj.bucket,
        "key": obj.key,
        "etag": obj.etag,
        "version_id": obj.version_id,
        "size": obj.size,
        "execution_id": state.get("execution_id"),
        "received_at": state.get("received_at"),
    }


def filter_by_confidence(state: State, threshold: float) -> State:
    """Accept at or above the threshold, else send to review; the outcome record is built here."""
    classification = state["classification"]
    outcome: Outcome = "accepted" if classification["confidence"] >= threshold else "review"
    record = OutcomeRecord(
        outcome=outcome,
        **_about(state),
        label=classification["label"],
        confidence=classification["confidence"],
        probabilities=classification["probabilities"],
        threshold=threshold,
        model_version=classification["model_version"],
        timings_ms=state.get("timings_ms", {}),
        source=state.get("image", {}).get("source"),
    )
    return {**state, "record": record.model_dump(mode="json", exclude_none=True)}


def failure_record(state: State) -> OutcomeRecord:
    reason, error_type, message = failure_reason(state.get("error") or {})
    return OutcomeRecord(
        outcome="failed",
        **_about(state),
        reason=reason,
        error_type=error_type,
        error_message=message[:1000],
        replay=ObjectRef.from_dict(state["object"]).as_dict(),
    )


def _record_body(store: ObjectStore, obj: ObjectRef, kind: OutcomeKind) -> bytes | None:
    """The object version's record of `kind`; None when it has none (or one past the size cap)."""
    try:
        return store.read(obj.bucket, obj.outcome_key(kind), MAX_RECORD_BYTES)[1]
    except ObjectMissing:
        return None


def _failure_record(store: ObjectStore, obj: ObjectRef) -> dict[str, Any] | None:
    """The object version's failure record; None when it has none, {} when it cannot be read."""
    body = _record_body(store, obj, "failed")
    if body is None:
        return None
    try:
        failure = json.loads(body)
    except ValueError:
        return {}
    return failure if isinstance(failure, dict) else {}


def _failure_reason(store: ObjectStore, obj: ObjectRef) -> str | None:
    """The reason of the object version's failure record; None when it has none."""
    failure = _failure_record(store, obj)
    return None if failure is None else str(failure.get("reason") or "unknown")


def recorded_outcome(
    store: ObjectStore, obj: ObjectRef, kinds: tuple[OutcomeKind, ...] = ("results", "review")
) -> State | None:
    """The result or review record (or the first of `kinds`) this object version already has, if any."""
    for kind in kinds:
        body = _record_body(store, obj, kind)
        if body is not None:
            return {**json.loads(body), "record_key": obj.outcome_key(kind)}
    return None


def record_outcome(
    state: State,
    store: ObjectStore,
    on_written: Callable[[State], None] | None = None,
    on_failure_replaced: Callable[[str], None] | None = None,
) -> State:
    """Write the outcome record (a failure record when the state carries an error) next to the data.

    A failure is not recorded over a result or review record of the same object version: a record
    invocation can write its result and still be reported failed (its answer lost, its time up), and
    then the upload has its outcome already. The returned record says which one stands.
    `on_written` is called with the record this call wrote, and only then (the caller counts it);
    `on_failure_replaced` with the reason of the failure record a replay's result, or a replay's own
    failure, replaced (so the failures counted equal the failure records).
    """
    failed = bool(state.get("error"))
    obj = ObjectRef.from_dict(state["object"])
    replaced: str | None = None  # the reason of an earlier run's failure record this one replaces
    if failed:
        existing = recorded_outcome(store, obj)
        if existing is not None:
            return {"object": state["object"], "record": existing}
        earlier = _failure_record(store, obj)
        if earlier and earlier.get("execution_id") == state.get("execution_id"):  # this run's, again
            return {"object": state["object"], "record": {**earlier, "record_key": obj.outcome_key("failed")}}
        if earlier is not None:  # an earlier run's failure (this is a replay that failed too)
            replaced = str(earlier.get("reason") or "unknown")
    record = failure_record(state) if failed else OutcomeRecord.model_validate(state["record"])
    record.recorded_at = now_iso()
    key = obj.outcome_key(OUTCOME_FOLDER[record.outcome])
    store.write_json(obj.bucket, key, record.to_json())
    if not failed and is_replay_execution(state.get("execution_id")):
        replaced = _failure_reason(store, obj)
        store.delete(obj.bucket, obj.outcome_key("failed"))  # the replay replaces the failure
    if replaced is not None and on_failure_replaced is not None:
        on_failure_replaced(replaced)
    written = {**record.model_dump(mode="json", exclude_none=True), "record_key": key}
    if on_written is not None:
        on_written(written)
    return {"object": state["object"], "record": written}
