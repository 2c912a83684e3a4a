"""Faults injected where they happen (the endpoint's own answers, its port, a handler, the review queue):
short ones are retried into a normal outcome; long ones end in `failed/` plus a DLQ message, and
`scones replay` turns those into normal outcomes once the fault is gone, leaving one outcome each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers.aws import StepFunctionsStarter
from scones.objects import ObjectRef
from service.local_stack import LocalStack
from service.outcome_watch import list_record_keys, object_key_of, wait_for_outcomes
from service.replay import ReplayReport, replay_failed
from tests.e2e.settle import dead_letters, quiet
from tests.unit.fakes import MemoryStarter
from training.staging import StagedDataset
from workflow.definitions import STATE_MACHINE_FILE
from workflow.names import METRICS_NAMESPACE

EVENTS = Path(__file__).parents[1] / "events"  # genuine AWS sample events

ROOT = Path(__file__).parents[2]


@pytest.fixture
def image(staged: StagedDataset) -> bytes:
    return next((staged.split_dir("test") / "motorcycle").iterdir()).read_bytes()


@pytest.fixture(autouse=True)
def healthy_afterwards(stack: LocalStack) -> Iterator[None]:
    yield
    stack.endpoint.faults.clear()
    stack.endpoint.come_back()


def upload(stack: LocalStack, data: bytes, count: int = 1) -> list[str]:
    folder = f"inbox/faults-{uuid.uuid4().hex[:8]}"
    keys = [f"{folder}/{n}.png" for n in range(count)]
    for key in keys:
        stack.client("s3").put_object(Bucket=stack.resources.bucket, Key=key, Body=data)
    return keys


def outcomes(stack: LocalStack, keys: list[str], timeout_s: float = 90) -> dict[str, dict[str, Any]]:
    """The keys' records, once their runs have ended (a DLQ letter is sent after the record)."""
    s3 = stack.client("s3")
    index = wait_for_outcomes(s3, stack.resources.bucket, keys, timeout_s=timeout_s, poll_s=0.1)
    assert set(index.records) == set(keys), "every upload has an outcome"
    quiet(stack)  # then a second record, had a run written one, is there to be seen
    assert not wait_for_outcomes(s3, stack.resources.bucket, keys, timeout_s=0).duplicates
    return index.records


def settled_outcomes(stack: LocalStack, keys: list[str]) -> dict[str, list[str]]:
    """After replays (their runs are started when `replay` returns): every key's record keys, once
    no run is going (a replay writes its record before it deletes the failure record)."""
    quiet(stack)
    found: dict[str, list[str]] = {}
    for record_key in list_record_keys(stack.client("s3"), stack.resources.bucket):
        found.setdefault(object_key_of(record_key), []).append(record_key)
    return {key: found.get(key, []) for key in keys}


def replay_report(stack: LocalStack, sqs: Any = None, *, undelivered: bool = True) -> ReplayReport:
    """`scones replay` on the stack: its failure records, its DLQ and (unless told) undelivered events."""
    return replay_failed(
        stack.client("s3"),
        StepFunctionsStarter(stack.client("stepfunctions"), stack.resources.state_machine_arn),
        stack.resources.bucket,
        sqs=sqs or stack.client("sqs"),
        dead_letter_queue_url=stack.resources.dead_letter_queue_url,
        event_dead_letter_queue_url=stack.resources.event_dead_letter_queue_url if undelivered else None,
    )


def replay(stack: LocalStack) -> dict[str, str]:
    return replay_report(stack, undelivered=False).replayed


def set_environment(stack: LocalStack, function: str, **variables: str) -> dict[str, str]:
    lam = stack.client("lambda")
    before: dict[str, str] = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    lam.update_function_configuration(FunctionName=function, Environment={"Variables": before | variables})
    return before


@pytest.mark.parametrize(("mode", "count"), [("error", 2), ("throttle", 4)])
def test_short_endpoint_faults_are_retried_into_a_normal_outcome(
    stack: LocalStack, image: bytes, mode: str, count: int
) -> None:
    injected = stack.endpoint.faults.injected
    stack.endpoint.faults.set(mode, count=count)  # type: ignore[arg-type]
    (key,) = upload(stack, image)
    record = outcomes(stack, [key])[key]
    assert record["outcome"] in {"accepted", "review"}
    assert stack.endpoint.faults.injected - injected == count
    quiet(stack)  # each failed attempt is counted, a throttled one apart (a burst is no fault)
    counted = {"error": "EndpointErrors", "throttle": "EndpointThrottles"}[mode]
    listed = stack.client("cloudwatch").list_metrics(Namespace=METRICS_NAMESPACE, MetricName=counted)
    assert listed["Metrics"], f"{counted} was not published"


def test_a_request_the_model_refuses_fails_as_model_rejected_and_replay_recovers_it(
    stack: LocalStack, image: bytes
) -> None:
    """A 4xx from the container (SageMaker's ModelError with its original status) for the thumbnail
    serialize made is the model's fault: no retry at once, `model_rejected`, and `scones replay`
    re-drives it once the model answers."""
    injected = stack.endpoint.faults.injected
    stack.endpoint.faults.set("reject", count=1)
    (key,) = upload(stack, image)
    record = outcomes(stack, [key])[key]
    assert (record["outcome"], record.get("reason")) == ("failed", "model_rejected"), record
    assert stack.endpoint.faults.injected - injected == 1, "refused once, not retried by the workflow"
    assert key in replay(stack)
    settled = settled_outcomes(stack, [key])
    assert len(settled[key]) == 1 and settled[key][0].startswith(("results/", "review/")), settled


def test_a_slow_endpoint_times_out_and_the_retry_succeeds(stack: LocalStack, image: bytes) -> None:
    before = set_environment(stack, "scones-classify", ENDPOINT_TIMEOUT_SECONDS="1")
    injected = stack.endpoint.faults.injected
    try:
        stack.endpoint.faults.set("slow", count=1, delay_s=2.5)
        (key,) = upload(stack, image)
        record = outcomes(stack, [key])[key]
    finally:
        stack.client("lambda").update_function_configuration(
            FunctionName="scones-classify", Environment={"Variables": before}
        )
    assert record["outcome"] in {"accepted", "review"}, "the first call gave up after 1 s, a retry answered"
    assert stack.endpoint.faults.injected - injected == 1


def test_an_outage_fails_uploads_with_dlq_messages_and_replay_recovers_them(
    stack: LocalStack, image: bytes
) -> None:
    stack.endpoint.go_down()
    keys = upload(stack, image, count=3)
    failed = outcomes(stack, keys, timeout_s=120)
    assert {record["outcome"] for record in failed.values()} == {"failed"}
    assert {record["reason"] for record in failed.values()} == {"endpoint_unavailable"}
    letters = [letter for letter in dead_letters(stack) if letter["key"] in keys]
    assert sorted(letter["key"] for letter in letters) == sorted(keys)
    assert all(letter["replay"]["etag"] == failed[letter["key"]]["etag"] for letter in letters)

    stack.endpoint.come_back()
    replayed = replay(stack)
    assert set(keys) <= set(replayed)
    settled = settled_outcomes(stack, keys)
    assert all(len(found) == 1 and not found[0].startswith("failed/") for found in settled.values()), settled
    assert not [letter for letter in dead_letters(stack) if letter["key"] in keys], (
        "replayed letters are cleared"
    )
    again = replay(stack)
    assert not set(keys) & set(again), "nothing left to replay"


def test_replaying_again_while_a_replay_runs_starts_no_second_run(stack: LocalStack, image: bytes) -> None:
    """`scones replay` twice in a row (the first one's runs still going): one replay per upload,
    one outcome, one notification."""
    stack.endpoint.go_down()
    (key,) = upload(stack, image)
    assert outcomes(stack, [key], timeout_s=120)[key]["reason"] == "endpoint_unavailable"
    stack.endpoint.come_back()
    stack.endpoint.faults.set("slow", count=1, delay_s=6.0)  # the replay is still classifying below
    runs = StepFunctionsStarter(stack.client("stepfunctions"), stack.resources.state_machine_arn)
    first = replay_failed(stack.client("s3"), runs, stack.resources.bucket)  # the records only: no queue
    second = replay_failed(stack.client("s3"), runs, stack.resources.bucket)
    assert key in first.replayed and key not in second.replayed, (first, second)
    assert second.in_progress == {key: first.replayed[key]} and key not in second.skipped, second
    settled = settled_outcomes(stack, [key])
    assert len(settled[key]) == 1 and settled[key][0].startswith(("results/", "review/")), settled
    replay_report(stack)  # clears the outage's letter, as the other tests expect the DLQ


def test_putting_the_same_bytes_again_after_a_failure_retries_the_upload(
    stack: LocalStack, image: bytes, tmp_path: Path
) -> None:
    """The uploader's retry: an outage failed the upload, the same file is submitted again under its
    key (same ETag, so the same version's name). A replay starts, its outcome replaces the failure,
    and `scones submit --wait` answers with it, not with the failure standing from before."""
    stack.endpoint.go_down()
    (key,) = upload(stack, image)
    failed = outcomes(stack, [key], timeout_s=120)[key]
    assert failed["reason"] == "endpoint_unavailable"
    stack.endpoint.come_back()
    s3 = stack.client("s3")
    again = tmp_path / key.rsplit("/", 1)[1]
    again.write_bytes(image)
    environment = os.environ | {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
    }
    command = [sys.executable, "-m", "service.cli", "submit", str(again), "--prefix", key.rsplit("/", 1)[0]]
    submitted = subprocess.run(
        [*command, "--wait", "--timeout", "120"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert s3.head_object(Bucket=stack.resources.bucket, Key=key)["ETag"].strip('"') == failed["etag"]
    settled = settled_outcomes(stack, [key])
    assert len(settled[key]) == 1 and settled[key][0].startswith(("results/", "review/")), settled
    assert f"{key}: {settled[key][0].split('/', 1)[0].replace('results', 'accepted')} " in submitted.stdout
    # put once more: the outcome stands, nothing runs again
    s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=image)
    assert settled_outcomes(stack, [key]) == settled
    runs = stack.client("stepfunctions").list_executions(stateMachineArn=stack.resources.state_machine_arn)
    names = {run["name"] for run in runs["executions"]}
    obj = ObjectRef(stack.resources.bucket, key, failed["etag"])
    assert {obj.execution_name(), obj.execution_name(replay=1)} <= names
    assert obj.execution_name(replay=2) not in names
    quiet(stack)
    for counted in ("UploadsRetried", "RepeatedUploads"):  # the retry, then the put whose outcome stands
        listed = stack.client("cloudwatch").list_metrics(Namespace=METRICS_NAMESPACE, MetricName=counted)
        assert listed["Metrics"], f"{counted} was not published"


def test_a_handler_raising_fails_the_upload_and_the_replay_command_recovers_it(
    stack: LocalStack, image: bytes
) -> None:
    stack.lambda_runtime.fail_next("scones-filter")
    (key,) = upload(stack, image)
    record = outcomes(stack, [key])[key]
    assert record["outcome"] == "failed" and record["error_type"] == "InjectedFault"
    assert record["reason"] == "internal_error"
    environment = os.environ | {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
    }
    command = [sys.executable, "-m", "service.cli", "replay", "--wait", "--timeout", "60"]
    finished = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"replaying {key} as " in finished.stdout
    settled = settled_outcomes(stack, [key])
    assert len(settled[key]) == 1 and settled[key][0].startswith(("results/", "review/"))
    obj = ObjectRef(stack.resources.bucket, key, record["etag"])
    assert obj.execution_name(replay=1) in finished.stdout
    outcome = "accepted" if settled[key][0].startswith("results/") else "review"
    assert f"{key}: {outcome} " in finished.stdout, finished.stdout  # the outcome, as submit --wait says


def test_the_review_queue_refusing_a_send_fails_the_upload_until_replayed(
    stack: LocalStack, image: bytes
) -> None:
    sqs = stack.client("sqs")
    before = set_environment(stack, "scones-filter", CONFIDENCE_THRESHOLD="1.0")  # everything to review
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.resources.review_queue_url, AttributeNames=["MessageRetentionPeriod"]
    )["Attributes"]

    def recreate() -> str:
        url: str = sqs.create_queue(QueueName=stack.names.review_queue, Attributes=attributes)["QueueUrl"]
        return url

    try:
        sqs.delete_queue(QueueUrl=stack.resources.review_queue_url)
        (key,) = upload(stack, image)
        record = outcomes(stack, [key])[key]
        assert record["outcome"] == "failed" and record["reason"] == "review_queue_unavailable"
        assert key in {letter["key"] for letter in dead_letters(stack)}
        assert recreate() == stack.resources.review_queue_url
        assert key in replay(stack)
        settled = settled_outcomes(stack, [key])
    finally:  # the later tests find the review queue as the stack made it, whatever failed above
        recreate()
        stack.client("lambda").update_function_configuration(
            FunctionName="scones-filter", Environment={"Variables": before}
        )
    assert len(settled[key]) == 1 and settled[key][0].startswith("review/")
    messages = sqs.receive_message(QueueUrl=stack.resources.review_queue_url, MaxNumberOfMessages=10)
    for message in messages.get("Messages", []):  # read and removed: none left hidden for later tests
        sqs.delete_message(QueueUrl=stack.resources.review_queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert key in {json.loads(m["Body"])["key"] for m in messages.get("Messages", [])}


def test_a_bad_uploads_dead_letter_is_cleared_by_replay_and_its_failure_record_stays(
    stack: LocalStack,
) -> None:
    """Not an image: the upload's own fault, never replayed. Its letter must not hold the DLQ's alarm
    until the queue's retention ends; `scones replay` deletes it, the record is the lasting outcome."""
    (key,) = upload(stack, b"plain text, not an image")
    record = outcomes(stack, [key])[key]
    assert record["outcome"] == "failed" and record["reason"] == "not_an_image"
    assert key in {letter["key"] for letter in dead_letters(stack)}
    assert key not in replay(stack)
    assert key not in {letter.get("key") for letter in dead_letters(stack)}
    assert settled_outcomes(stack, [key])[key] == [ObjectRef.from_dict(record).outcome_key("failed")]


def test_a_dead_letter_whose_failure_went_unrecorded_is_replayed(stack: LocalStack, image: bytes) -> None:
    """Storage down for the whole run: the workflow's last step sends the upload to the DLQ with reason
    `unrecorded` and no record exists. Replay runs the upload anew; it ends with one outcome."""
    s3, events = stack.client("s3"), stack.client("events")
    events.disable_rule(Name=stack.resources.rule_name)  # the lost run: no event, no record
    try:
        (key,) = upload(stack, image)
    finally:
        events.enable_rule(Name=stack.resources.rule_name)
    etag = s3.head_object(Bucket=stack.resources.bucket, Key=key)["ETag"].strip('"')
    obj = ObjectRef(stack.resources.bucket, key, etag)
    letter = {  # the body of the state machine's NotifyUnrecorded step
        "outcome": "failed",
        "reason": "unrecorded",
        "replay": obj.as_dict(),
        "execution_id": "arn:aws:states:us-east-1:123456789012:execution:scones-workflow:lost",
        "error": {"Error": "TransientError", "Cause": "S3 down"},
        "record_error": {"Error": "TransientError", "Cause": "S3 down"},
    }
    asl = json.loads(STATE_MACHINE_FILE.read_text())
    sent = asl["States"]["NotifyUnrecorded"]["Parameters"]["MessageBody"]
    assert set(letter) == {field.removesuffix(".$") for field in sent}, "the letter the workflow sends"
    stack.client("sqs").send_message(
        QueueUrl=stack.resources.dead_letter_queue_url, MessageBody=json.dumps(letter)
    )
    assert replay(stack)[key] == obj.execution_name(replay=1)
    settled = settled_outcomes(stack, [key])
    assert len(settled[key]) == 1 and settled[key][0].startswith(("results/", "review/"))
    assert key not in {letter.get("replay", {}).get("key") for letter in dead_letters(stack)}


def test_replay_says_what_it_cannot_read_or_start_and_deletes_no_letter_unread(stack: LocalStack) -> None:
    """A dead letter that is no letter of the workflow stays queued and is reported; an undelivered
    event that starts nothing is deleted and reported; neither stops the replay."""
    sqs = stack.client("sqs")
    sqs.send_message(QueueUrl=stack.resources.dead_letter_queue_url, MessageBody="not json at all")
    not_an_upload = {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "x"}}}
    sqs.send_message(
        QueueUrl=stack.resources.event_dead_letter_queue_url, MessageBody=json.dumps(not_an_upload)
    )
    report = replay_report(stack, sqs)
    assert any("not a dead letter" in why for why in report.unreadable.values()), report
    assert any("names no bucket or key" in why for why in report.events_ignored.values()), report
    left = sqs.receive_message(QueueUrl=stack.resources.dead_letter_queue_url, MaxNumberOfMessages=10)
    bodies = [message["Body"] for message in left.get("Messages", [])]
    assert "not json at all" in bodies, "kept for a person"
    for message in left.get("Messages", []):  # leave the queue as the other tests expect it
        if message["Body"] == "not json at all":
            sqs.delete_message(
                QueueUrl=stack.resources.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        else:
            sqs.change_message_visibility(
                QueueUrl=stack.resources.dead_letter_queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=0,
            )


def test_an_undelivered_event_whose_run_was_started_since_is_reported_not_started(stack: LocalStack) -> None:
    """The rule's DLQ holds an event whose upload the reconciler (or a late delivery) has started
    since: replay says so instead of counting it as started. The event is AWS's documented sample."""
    from service.load_run import object_created_event

    obj = ObjectRef(stack.resources.bucket, f"inbox/late-{uuid.uuid4().hex[:8]}.png", "0123456789abcdef")
    starter = MemoryStarter()
    starter.start(obj.execution_name(), "{}")  # the run the reconciler started
    sample = json.loads((EVENTS / "s3_object_created_aws_docs_sample.json").read_text())
    event = sample | {"detail": object_created_event(obj.bucket, obj.key, obj.etag, size=5)}
    sqs = stack.client("sqs")
    sqs.send_message(QueueUrl=stack.resources.event_dead_letter_queue_url, MessageBody=json.dumps(event))
    empty = f"no-records-{uuid.uuid4().hex[:8]}"  # no failure records: the undelivered events alone
    stack.client("s3").create_bucket(Bucket=empty)
    report = replay_failed(
        stack.client("s3"),
        starter,
        empty,
        sqs=sqs,
        event_dead_letter_queue_url=stack.resources.event_dead_letter_queue_url,
    )
    assert obj.key not in report.undelivered_started, report
    assert report.skipped[obj.key] == f"run {obj.execution_name()}: duplicate delivery: run already exists"


def test_a_failure_record_beside_a_replays_result_is_deleted_not_replayed(stack: LocalStack) -> None:
    """A replay writes its result, then deletes the failure record: reported failed in between (a
    timeout after the write), the failure record stays beside the result. Replay must not run the
    upload again (a second review message); it deletes the stale record instead."""
    s3 = stack.client("s3")
    obj = ObjectRef(stack.resources.bucket, f"inbox/stale-{uuid.uuid4().hex[:8]}.png", "89abcdef")
    failure = {"outcome": "failed", "reason": "endpoint_unavailable", "replay": obj.as_dict()}
    result = {"outcome": "accepted", "bucket": obj.bucket, "key": obj.key, "etag": obj.etag}
    s3.put_object(Bucket=obj.bucket, Key=obj.outcome_key("failed"), Body=json.dumps(failure).encode())
    s3.put_object(Bucket=obj.bucket, Key=obj.outcome_key("results"), Body=json.dumps(result).encode())
    report = replay_failed(
        s3,
        StepFunctionsStarter(stack.client("stepfunctions"), stack.resources.state_machine_arn),
        stack.resources.bucket,
    )
    assert obj.key not in report.replayed and "recorded since" in report.skipped[obj.key]
    assert settled_outcomes(stack, [obj.key])[obj.key] == [obj.outcome_key("results")]


def test_an_upload_replayed_to_the_limit_is_reported_and_the_others_still_replay(stack: LocalStack) -> None:
    """An upload whose every replay name is used is left as it is and said so (not a traceback that
    stops the other replays); the next failure is replayed. The fake starter has those names used."""
    from scones.steps import MAX_REPLAYS

    s3 = stack.client("s3")
    objects = []
    for name in ("worn-out", "fresh"):
        key = f"parked/{name}-{uuid.uuid4().hex[:8]}.png"  # outside inbox/: no run of its own
        etag = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=b"image bytes")["ETag"]
        obj = ObjectRef(stack.resources.bucket, key, etag.strip('"'))
        failure = {"outcome": "failed", "reason": "endpoint_unavailable", "replay": obj.as_dict()}
        s3.put_object(Bucket=obj.bucket, Key=obj.outcome_key("failed"), Body=json.dumps(failure).encode())
        objects.append(obj)
    worn_out, fresh = objects
    starter = MemoryStarter()
    for attempt in range(1, MAX_REPLAYS + 1):
        starter.start(worn_out.execution_name(replay=attempt), "{}")
        starter.finish(worn_out.execution_name(replay=attempt), "FAILED")
    try:
        report = replay_failed(s3, starter, stack.resources.bucket)
        assert f"replayed {MAX_REPLAYS} times already" in report.skipped[worn_out.key], report
        assert report.replayed[fresh.key] == fresh.execution_name(replay=1)
    finally:
        for obj in objects:
            s3.delete_object(Bucket=obj.bucket, Key=obj.outcome_key("failed"))


def test_a_letter_whose_receipt_went_stale_does_not_stop_the_replay(stack: LocalStack) -> None:
    """A DLQ read for longer than its visibility timeout: SQS refuses the release of a letter kept
    from the start (its receipt is stale). The replay goes on to the undelivered events, and reports.
    The injected fault: every release refused."""
    from botocore.exceptions import ClientError

    sqs = stack.client("sqs")
    sqs.send_message(QueueUrl=stack.resources.dead_letter_queue_url, MessageBody="kept: no letter of ours")
    refused: list[str] = []

    def stale_receipt(**request: Any) -> None:
        refused.append(request["ReceiptHandle"])
        raise ClientError(
            {"Error": {"Code": "ReceiptHandleIsInvalid", "Message": "stale"}}, "ChangeMessageVisibility"
        )

    sqs.change_message_visibility = stale_receipt
    report = replay_report(stack, sqs)
    assert refused and any("not a dead letter" in why for why in report.unreadable.values()), report
    queue, fresh = stack.resources.dead_letter_queue_url, stack.client("sqs")
    for receipt in refused:  # leave the queue as the other tests expect it
        fresh.change_message_visibility(QueueUrl=queue, ReceiptHandle=receipt, VisibilityTimeout=0)
    for message in fresh.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        if message["Body"] == "kept: no letter of ours":
            fresh.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        else:
            fresh.change_message_visibility(
                QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
