"""The moto adapters end to end: a real moto server on 127.0.0.1 with the adapters installed, real boto3.

The Lambda handlers here are small fakes registered under "tests.fake.*" handler strings; the real
handlers are tested elsewhere. What is under test is the AWS behaviour the adapters emulate.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import http.server
import io
import json
import os
import re
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from service import moto_adapters
from service.moto_adapters import HandlerFactory, RetryPolicy, jsonpath_cache
from service.moto_adapters.event_delivery import EventTargetDelivery
from service.moto_adapters.lambda_runtime import HandlerFunction
from service.moto_adapters.server import ACCOUNT_ID, REGION, LocalMotoServer, start_moto_server

ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/scones-test-lambda"
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
SEQUENCER = re.compile(r"^[0-9A-F]{16}$")
WAIT_S = 15.0


# ---------------------------------------------------------------------------------------------
# Fake handlers: what they received is recorded per function name


class Recorder:
    def __init__(self) -> None:
        self._items: dict[str, list[Any]] = defaultdict(list)
        self._changed = threading.Condition()

    def record(self, key: str, item: Any) -> None:
        with self._changed:
            self._items[key].append(item)
            self._changed.notify_all()

    def wait_for(self, key: str, count: int, timeout: float = WAIT_S) -> list[Any]:
        with self._changed:
            self._changed.wait_for(lambda: len(self._items[key]) >= count, timeout)
            return list(self._items[key])

    def get(self, key: str) -> list[Any]:
        with self._changed:
            return list(self._items[key])


RECORDER = Recorder()


def echo_factory(env: Mapping[str, str]) -> HandlerFunction:
    tag = env.get("TAG", "")
    name = env["AWS_LAMBDA_FUNCTION_NAME"]

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        RECORDER.record(name, event)
        print(f"echo {tag} {context.aws_request_id}")
        time.sleep(float(event.get("pause", 0)) if isinstance(event, dict) else 0)
        return {
            "tag": tag,
            "function": context.function_name,
            "event": event,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "tag_in_os_environ": "TAG" in os.environ,
        }

    return handler


REFUSED_WRITES: list[str] = []  # keys a `sleep` invocation tried to write and was refused


def sleep_factory(env: Mapping[str, str]) -> HandlerFunction:
    import boto3

    s3 = boto3.client(  # built with the environment, as a handler's clients are: not timed
        "s3",
        endpoint_url=env.get("S3_ENDPOINT_URL"),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        time.sleep(float(event["seconds"]))
        if "then_put" in event:  # a write after the sleep: refused once the invocation timed out
            key = event["then_put"]["key"]
            try:
                s3.put_object(Bucket=event["then_put"]["bucket"], Key=key, Body=b"late")
            except Exception:
                REFUSED_WRITES.append(key)
                raise
        return {"slept": event["seconds"]}

    return handler


def fail_factory(env: Mapping[str, str]) -> HandlerFunction:
    name = env["AWS_LAMBDA_FUNCTION_NAME"]

    def failing_handler(event: dict[str, Any], context: LambdaContext) -> None:
        RECORDER.record(name, event)
        document = event.get("detail", event)  # an EventBridge event or a direct payload
        raise ValueError(f"bad document {document.get('n')}")

    return failing_handler


def metrics_factory(env: Mapping[str, str]) -> HandlerFunction:
    metrics = Metrics(namespace=env["METRICS_NAMESPACE"], service=env["AWS_LAMBDA_FUNCTION_NAME"])

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, bool]:
        metrics.add_dimension(name="stage", value="test")
        metrics.add_metric(name="Processed", unit=MetricUnit.Count, value=event["count"])
        print(f"processed {event['count']}")
        return {"ok": True}

    return handler


def exclusive_factory(env: Mapping[str, str]) -> HandlerFunction:
    busy = threading.Lock()  # state of one execution environment

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, bool]:
        if not busy.acquire(blocking=False):
            raise RuntimeError("two running invocations share one execution environment")
        try:
            time.sleep(0.1)
            return {"ok": True}
        finally:
            busy.release()

    return handler


def broken_factory(env: Mapping[str, str]) -> HandlerFunction:
    raise RuntimeError("model bucket not configured")


FACTORY_CALLS: dict[str, int] = defaultdict(int)


def counted(factory: HandlerFactory) -> HandlerFactory:
    def build(env: Mapping[str, str]) -> HandlerFunction:
        FACTORY_CALLS[env["AWS_LAMBDA_FUNCTION_NAME"]] += 1
        return factory(env)

    return build


FACTORIES: dict[str, HandlerFactory] = {
    "tests.fake.echo": counted(echo_factory),
    "tests.fake.sleep": sleep_factory,
    "tests.fake.fail": fail_factory,
    "tests.fake.metrics": metrics_factory,
    "tests.fake.broken": broken_factory,
    "tests.fake.exclusive": exclusive_factory,
}


# ---------------------------------------------------------------------------------------------
# The stack


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# the handler runs in-process\n")
    return buffer.getvalue()


CODE = _zip()


class Aws:
    """boto3 clients for the stack plus the helpers the tests share."""

    def __init__(self, server: LocalMotoServer) -> None:
        self.server = server
        self.s3 = server.client("s3")
        self.sqs = server.client("sqs")
        self.events = server.client("events")
        self.sfn = server.client("stepfunctions")
        self.lam = server.client("lambda")
        self.logs = server.client("logs")
        self.cloudwatch = server.client("cloudwatch")
        self.sagemaker = server.client("sagemaker-runtime")
        self.rules: list[str] = []

    def name(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def function(
        self, handler: str, *, env: Mapping[str, str] | None = None, timeout: int = 3, prefix: str = "fn"
    ) -> tuple[str, str]:
        name = self.name(prefix)
        arn: str = self.lam.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=ROLE_ARN,
            Handler=handler,
            Code={"ZipFile": CODE},
            Timeout=timeout,
            Environment={"Variables": dict(env or {})},
        )["FunctionArn"]
        return name, arn

    def queue(self, prefix: str = "q") -> tuple[str, str]:
        url: str = self.sqs.create_queue(QueueName=self.name(prefix))["QueueUrl"]
        arn: str = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    def drain(self, url: str, expect: int | None = None, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        """The queue's messages; with `expect`, wait until that many arrived (and a moment for extras)."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            for message in batch:
                messages.append(message)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if batch:
                continue
            if expect is None or len(messages) >= expect or time.monotonic() > deadline:
                return messages
            time.sleep(0.05)

    def bucket(self, *, versioned: bool = False) -> str:
        name = self.name("bucket")
        self.s3.create_bucket(Bucket=name)
        if versioned:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        self.s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        return name

    def rule(self, pattern: Mapping[str, Any], targets: list[dict[str, Any]]) -> str:
        name = self.name("rule")
        self.events.put_rule(Name=name, EventPattern=json.dumps(pattern))
        self.events.put_targets(Rule=name, Targets=targets)
        self.rules.append(name)
        return name

    def settle(self) -> None:
        installed = self.server.adapters
        assert installed.delivery.wait_idle(WAIT_S), "EventBridge deliveries did not finish"

    def wait_execution(self, execution_arn: str, timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                return described
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Remove the rules: with the adapters gone, moto cannot deliver to Lambda targets again."""
        for rule in self.rules:
            targets = self.events.list_targets_by_rule(Rule=rule)["Targets"]
            if targets:
                self.events.remove_targets(Rule=rule, Ids=[target["Id"] for target in targets])
            self.events.delete_rule(Name=rule)


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    server = start_moto_server(
        FACTORIES, event_retry=RetryPolicy(max_retries=1, first_backoff_s=0.02, backoff_rate=2.0)
    )
    clients = Aws(server)
    server.client("iam").create_role(RoleName="scones-test-lambda", AssumeRolePolicyDocument="{}")
    try:
        yield clients
    finally:
        try:
            clients.cleanup()
        finally:
            server.stop()


def _invoke(aws: Aws, name: str, payload: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    response: dict[str, Any] = aws.lam.invoke(FunctionName=name, Payload=json.dumps(payload), **kwargs)
    return response, json.loads(response["Payload"].read() or b"null")


# ---------------------------------------------------------------------------------------------
# S3 -> EventBridge -> Lambda


def test_s3_put_delivers_an_aws_shaped_event_to_the_lambda_target(aws: Aws) -> None:
    bucket = aws.bucket()
    function, arn = aws.function("tests.fake.echo", prefix="inbox")
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "inbox/"}]}},
    }
    aws.rule(pattern, [{"Id": "start", "Arn": arn}])
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)

    first = aws.s3.put_object(Bucket=bucket, Key="inbox/a b.jpg", Body=b"first")
    aws.s3.put_object(Bucket=bucket, Key="other/x.jpg", Body=b"not routed")
    second = aws.s3.put_object(Bucket=bucket, Key="inbox/c.jpg", Body=b"second!")
    events = RECORDER.wait_for(function, 2)
    aws.settle()

    events = RECORDER.get(function)
    assert len(events) == 2, "only the two inbox/ objects match the rule, once each"
    by_key = {event["detail"]["object"]["key"]: event for event in events}
    assert set(by_key) == {"inbox/a+b.jpg", "inbox/c.jpg"}, "keys arrive URL-encoded, as from S3"
    a, c = by_key["inbox/a+b.jpg"], by_key["inbox/c.jpg"]
    assert a["id"] != c["id"]
    uuid.UUID(a["id"])
    for event, put in ((a, first), (c, second)):
        assert event["source"] == "aws.s3"
        assert event["detail-type"] == "Object Created"
        assert event["account"] == ACCOUNT_ID
        assert event["region"] == REGION
        assert event["resources"] == [f"arn:aws:s3:::{bucket}"]
        assert ISO_TIME.match(event["time"]), event["time"]
        assert dt.datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S%z") >= before
        assert "ingestion-time" not in event
        obj = event["detail"]["object"]
        assert obj["etag"] == put["ETag"].strip('"')
        assert "eTag" not in obj
        assert "version-id" not in obj, "unversioned bucket"
        assert SEQUENCER.match(obj["sequencer"])
        assert event["detail"]["reason"] == "PutObject"
        assert event["detail"]["requester"] == ACCOUNT_ID
        assert event["detail"]["bucket"] == {"name": bucket}
    assert a["detail"]["object"]["size"] == len(b"first")
    assert int(c["detail"]["object"]["sequencer"], 16) > int(a["detail"]["object"]["sequencer"], 16)


def test_s3_events_on_an_sqs_target_one_per_upload_multipart_included(aws: Aws) -> None:
    bucket = aws.bucket()
    queue_url, queue_arn = aws.queue()
    aws.rule(
        {"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket]}}}, [{"Id": "q", "Arn": queue_arn}]
    )

    aws.s3.put_object(Bucket=bucket, Key="inbox/plain.jpg", Body=b"x")
    upload = aws.s3.create_multipart_upload(Bucket=bucket, Key="inbox/big.bin")
    part = aws.s3.upload_part(
        Bucket=bucket, Key="inbox/big.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"z" * 16
    )
    completed = aws.s3.complete_multipart_upload(
        Bucket=bucket,
        Key="inbox/big.bin",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    aws.s3.copy_object(
        Bucket=bucket, Key="inbox/copy.jpg", CopySource={"Bucket": bucket, "Key": "inbox/plain.jpg"}
    )
    aws.s3.delete_object(Bucket=bucket, Key="inbox/copy.jpg")

    events = [json.loads(message["Body"]) for message in aws.drain(queue_url, expect=4)]

    summary = [
        (event["detail-type"], event["detail"]["object"]["key"], event["detail"]["reason"])
        for event in events
    ]
    assert sorted(summary) == sorted(
        [
            ("Object Created", "inbox/plain.jpg", "PutObject"),
            ("Object Created", "inbox/big.bin", "CompleteMultipartUpload"),
            ("Object Created", "inbox/copy.jpg", "CopyObject"),
            ("Object Deleted", "inbox/copy.jpg", "DeleteObject"),
        ]
    ), "no 'Object Tags Added', no inner PutObject for the multipart upload"
    multipart = next(event for event in events if event["detail"]["reason"] == "CompleteMultipartUpload")
    assert multipart["detail"]["object"]["etag"] == completed["ETag"].strip('"')
    assert multipart["detail"]["object"]["etag"].endswith("-1")
    assert all(ISO_TIME.match(event["time"]) for event in events), "moto's SQS target converts the float time"
    deleted = next(event for event in events if event["detail-type"] == "Object Deleted")
    assert deleted["detail"]["deletion-type"] == "Permanently Deleted"
    assert "etag" not in deleted["detail"]["object"]
    assert len({event["id"] for event in events}) == 4


def test_versioned_bucket_events_carry_the_version_id(aws: Aws) -> None:
    bucket = aws.bucket(versioned=True)
    queue_url, queue_arn = aws.queue()
    aws.rule(
        {"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket]}}}, [{"Id": "q", "Arn": queue_arn}]
    )

    put = aws.s3.put_object(Bucket=bucket, Key="inbox/v.jpg", Body=b"v1")
    (message,) = aws.drain(queue_url, expect=1)

    assert json.loads(message["Body"])["detail"]["object"]["version-id"] == put["VersionId"]


# ---------------------------------------------------------------------------------------------
# EventBridge delivery: retries, dead-letter queue, Step Functions targets, disabled rules


def test_a_failing_lambda_target_is_retried_then_dead_lettered(aws: Aws) -> None:
    function, arn = aws.function("tests.fake.fail", prefix="failing")
    dlq_url, dlq_arn = aws.queue("dlq")
    source = aws.name("scones.test")
    rule = aws.rule(
        {"source": [source]},
        [
            {
                "Id": "fails",
                "Arn": arn,
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60},
                "DeadLetterConfig": {"Arn": dlq_arn},
            }
        ],
    )

    aws.events.put_events(Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps({"n": 7})}])
    (message,) = aws.drain(dlq_url, expect=1)
    aws.settle()

    assert len(RECORDER.get(function)) == 3, "the first attempt and MaximumRetryAttempts=2 retries"
    event = json.loads(message["Body"])
    assert event["source"] == source
    assert event["detail"] == {"n": 7}
    assert ISO_TIME.match(event["time"])
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "ValueError"
    assert attributes["ERROR_MESSAGE"] == "bad document 7"
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttempts"
    assert attributes["RETRY_ATTEMPTS"] == "2"
    assert attributes["TARGET_ARN"] == arn
    assert attributes["RULE_ARN"].endswith(f":rule/{rule}")


def test_a_delivery_waiting_to_retry_at_stop_is_abandoned_not_dead_lettered(aws: Aws) -> None:
    """Stopping the stack ends retry waits: the event is left to the reconciler, not sent to the DLQ."""
    function, arn = aws.function("tests.fake.fail", prefix="failing")
    dlq_url, dlq_arn = aws.queue("dlq")
    delivery = EventTargetDelivery(aws.server.adapters.runtime, retry=RetryPolicy(first_backoff_s=60.0))
    target = {"Id": "fails", "Arn": arn, "DeadLetterConfig": {"Arn": dlq_arn}}
    event = {"id": "e-1", "source": "scones.test", "detail-type": "Test", "detail": {"n": 3}}
    try:
        future = delivery.submit("arn:aws:events:us-east-1:123456789012:rule/stopping", target, event)
        assert len(RECORDER.wait_for(function, 1)) == 1, "the first attempt ran"
    finally:
        delivery.shutdown()

    outcome = future.result(timeout=WAIT_S)
    assert (outcome.delivered, outcome.dead_lettered, outcome.attempts) == (False, False, 1)
    assert (outcome.error_code, outcome.error_message) == ("ValueError", "bad document 3")
    assert aws.drain(dlq_url) == []
    assert delivery.wait_idle(0)


def test_a_function_error_gets_lambdas_two_retries_and_a_missing_function_none(aws: Aws) -> None:
    """The stack's rule allows 185 retries (for handing events over); a function that runs and fails
    is retried twice, as Lambda retries an asynchronous invocation, and a function that does not exist
    is not retried at all: both go to the dead-letter queue."""
    function, arn = aws.function("tests.fake.fail", prefix="failing-long")
    dlq_url, dlq_arn = aws.queue("dlq-long")
    source = aws.name("scones.test")
    policy = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    missing = arn.rsplit(":", 1)[0] + ":no-such-function"
    aws.rule(
        {"source": [source]},
        [
            {"Id": "fails", "Arn": arn, "RetryPolicy": policy, "DeadLetterConfig": {"Arn": dlq_arn}},
            {"Id": "gone", "Arn": missing, "RetryPolicy": policy, "DeadLetterConfig": {"Arn": dlq_arn}},
        ],
    )
    aws.events.put_events(Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps({"n": 1})}])
    messages = aws.drain(dlq_url, expect=2)
    aws.settle()
    assert len(RECORDER.get(function)) == 3, "the first attempt and Lambda's two retries"
    attributes = {
        m["MessageAttributes"]["TARGET_ARN"]["StringValue"]: {
            name: value["StringValue"] for name, value in m["MessageAttributes"].items()
        }
        for m in messages
    }
    assert (attributes[arn]["EXHAUSTED_RETRY_CONDITION"], attributes[arn]["RETRY_ATTEMPTS"]) == (
        "MaximumRetryAttempts",
        "2",
    )
    assert attributes[missing]["ERROR_CODE"] == "ResourceNotFoundException"
    assert attributes[missing]["RETRY_ATTEMPTS"] == "0"


def test_a_step_functions_target_starts_an_execution_beside_an_sqs_target(aws: Aws) -> None:
    machine = aws.sfn.create_state_machine(
        name=aws.name("pass"),
        roleArn=ROLE_ARN,
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    queue_url, queue_arn = aws.queue()
    source = aws.name("scones.test")
    aws.rule({"source": [source]}, [{"Id": "sfn", "Arn": machine}, {"Id": "q", "Arn": queue_arn}])

    aws.events.put_events(
        Entries=[{"Source": source, "DetailType": "Test", "Detail": json.dumps({"k": "v"})}]
    )
    aws.settle()

    assert len(aws.drain(queue_url, expect=1)) == 1
    (execution,) = aws.sfn.list_executions(stateMachineArn=machine)["executions"]
    uuid.UUID(execution["name"])
    described = aws.wait_execution(execution["executionArn"])
    assert described["status"] == "SUCCEEDED"
    delivered = json.loads(described["input"])
    assert delivered["detail"] == {"k": "v"}
    assert ISO_TIME.match(delivered["time"])


def test_a_disabled_rule_delivers_nothing(aws: Aws) -> None:
    function, arn = aws.function("tests.fake.echo", prefix="disabled")
    source = aws.name("scones.test")
    rule = aws.rule({"source": [source]}, [{"Id": "echo", "Arn": arn}])
    aws.events.disable_rule(Name=rule)

    aws.events.put_events(Entries=[{"Source": source, "DetailType": "Test", "Detail": "{}"}])
    aws.settle()

    assert RECORDER.get(function) == []


# ---------------------------------------------------------------------------------------------
# Lambda Invoke in-process


def test_concurrent_invocations_each_see_their_own_environment(aws: Aws) -> None:
    functions = {
        tag: aws.function("tests.fake.echo", env={"TAG": tag})[0] for tag in ("red", "green", "blue")
    }
    environ_before = dict(os.environ)

    def call(tag: str) -> tuple[str, dict[str, Any]]:
        _, payload = _invoke(aws, functions[tag], {"pause": 0.05})
        return tag, payload

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, ["red", "green", "blue"] * 4))

    assert dict(os.environ) == environ_before
    for tag, payload in results:
        assert payload["tag"] == tag
        assert payload["function"] == functions[tag]
        assert payload["tag_in_os_environ"] is False
        assert 0 < payload["remaining_ms"] <= 3000
    # one warm environment per concurrent invocation at most, as Lambda scales out; then reuse
    cold_starts = {name: FACTORY_CALLS[name] for name in functions.values()}
    assert all(1 <= count <= 4 for count in cold_starts.values()), cold_starts
    for name in functions.values():
        for _ in range(3):
            _invoke(aws, name, {})
    assert {name: FACTORY_CALLS[name] for name in functions.values()} == cold_starts, "warm environments"

    aws.lam.update_function_configuration(
        FunctionName=functions["red"], Environment={"Variables": {"TAG": "pink"}}
    )
    _, payload = _invoke(aws, functions["red"], {})
    assert payload["tag"] == "pink"
    assert FACTORY_CALLS[functions["red"]] == cold_starts[functions["red"]] + 1, (
        "new configuration, new handler"
    )


def test_a_warm_environment_serves_one_invocation_at_a_time(aws: Aws) -> None:
    name, _ = aws.function("tests.fake.exclusive")

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: _invoke(aws, name, {}), range(6)))

    assert [payload for _, payload in responses] == [{"ok": True}] * 6


def test_the_function_timeout_is_enforced(aws: Aws) -> None:
    name, _ = aws.function("tests.fake.sleep", timeout=1)

    response, payload = _invoke(aws, name, {"seconds": 3})

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]


def test_a_timed_out_invocation_sends_nothing_more(aws: Aws) -> None:
    environment = {"S3_ENDPOINT_URL": aws.server.endpoint_url}
    slow, _ = aws.function("tests.fake.sleep", timeout=1, env=environment)
    prompt_one, _ = aws.function("tests.fake.sleep", timeout=30, env=environment)
    bucket = aws.name("frozen")
    aws.s3.create_bucket(Bucket=bucket)
    late_key = aws.name("late")

    _, late = _invoke(aws, slow, {"seconds": 1.5, "then_put": {"bucket": bucket, "key": late_key}})
    _, prompt = _invoke(aws, prompt_one, {"seconds": 0.1, "then_put": {"bucket": bucket, "key": "prompt"}})
    deadline = time.monotonic() + 30
    while late_key not in REFUSED_WRITES:  # the timed-out thread wakes and tries its write
        assert time.monotonic() < deadline, "the timed-out invocation never tried its write"
        time.sleep(0.05)

    assert late["errorType"] == "Sandbox.Timedout" and prompt == {"slept": 0.1}
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["prompt"], "the write after the timeout never reached S3"


def test_an_unhandled_exception_has_lambdas_error_shape(aws: Aws) -> None:
    name, _ = aws.function("tests.fake.fail")

    response, payload = _invoke(aws, name, {"n": 3}, LogType="Tail")

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "bad document 3"
    uuid.UUID(payload["requestId"])
    assert isinstance(payload["stackTrace"], list)
    assert any("failing_handler" in frame for frame in payload["stackTrace"])
    assert not any("lambda_runtime.py" in frame for frame in payload["stackTrace"])
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "[ERROR] ValueError: bad document 3" in tail
    assert f"END RequestId: {payload['requestId']}" in tail


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("tests.fake.missing", "no in-process handler is registered for 'tests.fake.missing'"),
        ("tests.fake.broken", "Unable to import module 'tests.fake': model bucket not configured"),
    ],
)
def test_unknown_or_failing_handlers_are_import_errors(aws: Aws, handler: str, message: str) -> None:
    name, _ = aws.function(handler)

    response, payload = _invoke(aws, name, {})

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert message in payload["errorMessage"]


def test_event_invocations_run_in_the_background(aws: Aws) -> None:
    name, _ = aws.function("tests.fake.echo")

    response = aws.lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"async": 1}))

    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    assert RECORDER.wait_for(name, 1) == [{"async": 1}]


def test_invocation_output_goes_to_cloudwatch_logs(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    name, _ = aws.function("tests.fake.echo", env={"TAG": "logged"})

    _, payload = _invoke(aws, name, {})

    group = f"/aws/lambda/{name}"
    messages = [event["message"] for event in aws.logs.filter_log_events(logGroupName=group)["events"]]
    request_lines = [message for message in messages if message.startswith("echo logged ")]
    assert len(request_lines) == 1
    request_id = request_lines[0].split()[-1]
    assert messages[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert f"END RequestId: {request_id}" in messages
    assert any(message.startswith(f"REPORT RequestId: {request_id}\tDuration: ") for message in messages)
    assert "echo logged" not in capsys.readouterr().out, "the invocation's output is captured, not printed"
    assert payload["tag"] == "logged"


def test_emf_lines_printed_by_a_handler_become_cloudwatch_metrics(aws: Aws) -> None:
    namespace = aws.name("Scones")
    name, _ = aws.function("tests.fake.metrics", env={"METRICS_NAMESPACE": namespace})
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)

    for count in (2, 3):
        response, _ = _invoke(aws, name, {"count": count})
        assert "FunctionError" not in response

    dimensions = [{"Name": "service", "Value": name}, {"Name": "stage", "Value": "test"}]
    listed = aws.cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    # (a set: moto 5.2.5's list_metrics repeats a metric with two or more dimensions once per datum)
    assert {
        (metric["MetricName"], json.dumps(sorted(metric["Dimensions"], key=str))) for metric in listed
    } == {("Processed", json.dumps(sorted(dimensions, key=str)))}
    data = aws.cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "processed",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": "Processed", "Dimensions": dimensions},
                    "Period": 300,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=start,
        EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
    )["MetricDataResults"]
    assert sum(data[0]["Values"]) == 5.0
    logs = aws.logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    assert sum('"_aws"' in event["message"] for event in logs) == 2, "EMF lines stay in the log, as in AWS"


# ---------------------------------------------------------------------------------------------
# Step Functions running the in-process Lambda


def test_a_state_machine_invokes_the_in_process_lambda_and_sends_to_sqs(aws: Aws) -> None:
    _, function_arn = aws.function("tests.fake.echo", env={"TAG": "sfn"})
    queue_url, _ = aws.queue()
    definition = {
        "StartAt": "Classify",
        "States": {
            "Classify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
                "ResultSelector": {"result.$": "$.Payload"},
                "ResultPath": "$.classify",
                "Next": "Notify",
            },
            "Notify": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": queue_url, "MessageBody.$": "$.classify.result"},
                "ResultPath": None,
                "End": True,
            },
        },
    }
    machine = aws.sfn.create_state_machine(
        name=aws.name("pipeline"), roleArn=ROLE_ARN, definition=json.dumps(definition)
    )["stateMachineArn"]
    hits_before = jsonpath_cache.cache_info()["json_path"].hits

    execution = aws.sfn.start_execution(
        stateMachineArn=machine, name="img-1", input=json.dumps({"key": "inbox/1.jpg"})
    )
    described = aws.wait_execution(execution["executionArn"])

    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["classify"]["result"]["tag"] == "sfn"
    assert output["classify"]["result"]["event"] == {"key": "inbox/1.jpg"}
    (message,) = aws.drain(queue_url, expect=1)
    assert json.loads(message["Body"])["tag"] == "sfn"
    second = aws.sfn.start_execution(
        stateMachineArn=machine, name="img-2", input=json.dumps({"key": "inbox/2.jpg"})
    )
    assert aws.wait_execution(second["executionArn"])["status"] == "SUCCEEDED"
    assert jsonpath_cache.cache_info()["json_path"].hits > hits_before, "the second run reuses parsed paths"


def test_lambda_tasks_go_direct_and_answer_as_the_client_path_does(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sfn_lambda_invoke`: a task's result, a function error and an unknown function end the same
    with and without the direct path; only the unknown function still goes through the Invoke API."""
    from moto.awslambda.responses import LambdaResponse

    from service.moto_adapters import sfn_lambda_invoke

    assert sfn_lambda_invoke.is_installed()
    echo, echo_arn = aws.function("tests.fake.echo", env={"TAG": "direct"})
    failing, _ = aws.function("tests.fake.fail")
    west_arn = aws.server.client("lambda", region="us-west-2").create_function(  # same name, another region
        FunctionName=echo,
        Runtime="python3.11",
        Role=ROLE_ARN,
        Handler="tests.fake.echo",
        Code={"ZipFile": CODE},
        Environment={"Variables": {"TAG": "west"}},
    )["FunctionArn"]
    machines = {
        target: aws.sfn.create_state_machine(
            name=aws.name("direct"),
            roleArn=ROLE_ARN,
            definition=json.dumps(
                {
                    "StartAt": "Call",
                    "States": {
                        "Call": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": target, "Payload.$": "$"},
                            "End": True,
                        }
                    },
                }
            ),
        )["stateMachineArn"]
        for target in (echo_arn, failing, aws.name("missing"), west_arn)
    }
    api_calls: list[str] = []
    api_invoke = LambdaResponse.invoke

    def counted_invoke(self: LambdaResponse) -> Any:
        api_calls.append(self.path)
        return api_invoke(self)

    monkeypatch.setattr(LambdaResponse, "invoke", counted_invoke)  # observes; changes nothing

    def outcomes(run: str) -> list[tuple[str, Any]]:
        ended = []
        for machine in machines.values():
            execution = aws.sfn.start_execution(
                stateMachineArn=machine, name=f"{run}-{uuid.uuid4().hex[:6]}", input=json.dumps({"n": 7})
            )
            described = aws.wait_execution(execution["executionArn"])
            if described["status"] == "SUCCEEDED":
                output = json.loads(described["output"])
                output["Payload"].pop("remaining_ms")
                ended.append(("SUCCEEDED", output))
            else:
                cause: Any = described.get("cause", "")
                try:
                    cause = {k: v for k, v in json.loads(cause).items() if k != "requestId"}
                except ValueError:  # the Invoke API's error, quoted with its request id
                    cause = re.sub(r"Request ID: [^;]*;", "", cause)
                ended.append((described["status"], (described.get("error"), cause)))
        return ended

    direct = outcomes("direct")
    direct_api_calls = len(api_calls)
    sfn_lambda_invoke.uninstall()
    try:
        through_api = outcomes("api")
    finally:
        sfn_lambda_invoke.install()

    assert direct == through_api
    ok, failed, missing, west = direct
    assert ok[0] == "SUCCEEDED" and ok[1]["StatusCode"] == 200 and ok[1]["Payload"]["tag"] == "direct"
    assert failed[0] == "FAILED" and failed[1][0] == "ValueError"
    assert failed[1][1]["errorMessage"] == "bad document 7"
    assert missing == ("FAILED", ("Lambda.ResourceNotFoundException", missing[1][1]))
    # moto's client path calls the caller's region whatever the ARN names; the direct path leaves such
    # an ARN to it
    assert west[0] == "SUCCEEDED" and west[1]["Payload"]["tag"] == "direct"
    assert direct_api_calls == 2, "only the unknown function and the other region's ARN took the client path"
    assert len(api_calls) == direct_api_calls + 4


# ---------------------------------------------------------------------------------------------
# Version pin and JSONPath cache


def test_the_adapters_refuse_another_moto_version() -> None:
    assert moto_adapters.MOTO_VERSION == "5.2.5"
    assert all(adapter.MOTO_VERSION == moto_adapters.MOTO_VERSION for adapter in moto_adapters.ADAPTERS)
    with pytest.raises(moto_adapters.MotoVersionMismatch, match=re.escape("written against moto 9.9.9")):
        moto_adapters.check_moto_version("9.9.9")


def test_the_jsonpath_cache_returns_what_the_parser_returns() -> None:
    from jsonpath_ng.ext.parser import parse as uncached_parse
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    document = {"detail": {"object": {"key": "inbox/a.jpg", "tags": [1, 2, 3]}}}
    before = jsonpath_cache.cache_info()
    paths = ["$.detail.object.key", "$.detail.object.tags[1]", "$.detail.object.tags[*]"]

    for _ in range(3):
        for path in paths:
            expected = [match.value for match in uncached_parse(path).find(document)]
            assert [match.value for match in json_path.parse(path).find(document)] == expected  # type: ignore[attr-defined]
    assert json_path.extract_json("$.detail.object.key", document) == "inbox/a.jpg"
    assert result_path.parse("$.result") is result_path.parse("$.result")  # type: ignore[attr-defined]

    after = jsonpath_cache.cache_info()
    assert after["json_path"].hits >= before["json_path"].hits + 2 * len(paths)
    assert after["result_path"].hits >= before["result_path"].hits + 1


# ---------------------------------------------------------------------------------------------
# SageMaker Runtime forwarded to a (fake) model server


class _FakeModelServer(http.server.BaseHTTPRequestHandler):
    """Answers /endpoints/<name>/invocations like a model server; `broken` answers 500."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/endpoints/broken/invocations":
            self._reply(500, b"kaput", {"Content-Type": "text/plain"})
            return
        document = {
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "accept": self.headers.get("Accept"),
            "custom_attributes": self.headers.get("X-Amzn-SageMaker-Custom-Attributes"),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        self._reply(
            200,
            json.dumps(document).encode(),
            {
                "Content-Type": "application/json",
                "X-Amzn-SageMaker-Custom-Attributes": "model-version=fake-1",
            },
        )

    def _reply(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def model_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeModelServer)
    thread = threading.Thread(target=server.serve_forever, name="fake-model-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _client_error(call: Callable[[], object]) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value


def test_invoke_endpoint_is_forwarded_to_the_model_server(aws: Aws, model_server: str) -> None:
    endpoints = aws.server.adapters.endpoints
    endpoints.register("scones-classifier", model_server)
    endpoints.register("broken", model_server)
    image = b"\x89PNG\r\n\x1a\n\xff\xfe\x00 not utf-8"
    try:
        response = aws.sagemaker.invoke_endpoint(
            EndpointName="scones-classifier",
            ContentType="application/x-image",
            Accept="application/json",
            CustomAttributes="trace=1",
            Body=image,
        )
        unknown = _client_error(
            lambda: aws.sagemaker.invoke_endpoint(EndpointName="nope", ContentType="image/png", Body=b"x")
        )
        broken = _client_error(
            lambda: aws.sagemaker.invoke_endpoint(EndpointName="broken", ContentType="image/png", Body=b"x")
        )
    finally:
        endpoints.unregister("scones-classifier")
        endpoints.unregister("broken")

    answer = json.loads(response["Body"].read())
    assert answer == {
        "path": "/endpoints/scones-classifier/invocations",
        "content_type": "application/x-image",
        "accept": "application/json",
        "custom_attributes": "trace=1",
        "sha256": hashlib.sha256(image).hexdigest(),
    }
    assert response["ContentType"] == "application/json"
    assert response["CustomAttributes"] == "model-version=fake-1"
    assert response["InvokedProductionVariant"] == "AllTraffic"

    assert unknown.response["Error"]["Code"] == "ValidationError"
    assert unknown.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert unknown.response["Error"]["Message"] == f"Endpoint nope of account {ACCOUNT_ID} not found."

    assert broken.response["Error"]["Code"] == "ModelError"
    assert broken.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    modeled = cast(dict[str, Any], broken.response)  # ModelError's extra members
    assert modeled["OriginalStatusCode"] == 500
    assert modeled["OriginalMessage"] == "kaput"


def test_cfn_state_machine_fills_an_inline_definitions_placeholders_and_refuses_missing_ones() -> None:
    from service.moto_adapters.cfn_state_machine import resolved_definition

    properties = {
        "DefinitionString": json.dumps(
            {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${FnArn}", "End": True}}}
        ),
        "DefinitionSubstitutions": {"FnArn": "arn:aws:lambda:us-east-1:123456789012:function:f"},
    }
    definition = json.loads(resolved_definition(properties, "123456789012"))
    assert definition["States"]["A"]["Resource"] == "arn:aws:lambda:us-east-1:123456789012:function:f"
    with pytest.raises(KeyError, match="FnArn"):
        resolved_definition({"DefinitionString": properties["DefinitionString"]}, "123456789012")


def test_sagemaker_update_endpoint_is_added_to_moto_and_removed_again() -> None:
    from moto.sagemaker.responses import SageMakerResponse

    from service.moto_adapters import sagemaker_update_endpoint

    installed_before = sagemaker_update_endpoint.installed()
    sagemaker_update_endpoint.uninstall()
    try:
        assert not hasattr(SageMakerResponse, "update_endpoint"), (
            "moto 5.2.5 has no UpdateEndpoint of its own"
        )
        sagemaker_update_endpoint.install()
        assert callable(getattr(SageMakerResponse, "update_endpoint", None))
    finally:  # the rest of the session finds the adapter as it was
        if installed_before:
            sagemaker_update_endpoint.install()
        else:
            sagemaker_update_endpoint.uninstall()


def script_archive(program: str) -> bytes:
    """A script-mode `sourcedir.tar.gz` whose entry point `entry.py` is `program`."""
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = program.encode()
        info = tarfile.TarInfo("entry.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def start_training_job(aws: Aws, bucket: str, name: str, program: str, *, max_runtime_s: int = 60) -> Any:
    s3, sagemaker = aws.server.client("s3"), aws.server.client("sagemaker")
    s3.put_object(Bucket=bucket, Key=f"code/{name}.tar.gz", Body=script_archive(program))
    sagemaker.create_training_job(
        TrainingJobName=name,
        RoleArn="arn:aws:iam::123456789012:role/sagemaker",
        AlgorithmSpecification={"TrainingImage": "image:1", "TrainingInputMode": "File"},
        HyperParameters={
            "epochs": "3",
            "sagemaker_program": "entry.py",
            "sagemaker_submit_directory": f"s3://{bucket}/code/{name}.tar.gz",
        },
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/train/"}},
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/models/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": max_runtime_s},
    )
    return sagemaker


def test_sagemaker_training_runs_the_entry_point_and_reports_its_failure(aws: Aws) -> None:
    """A script-mode job whose program exits 1 ends Failed with its stderr; one that writes a model ends
    Completed with `model.tar.gz` at its ModelArtifacts."""
    import tarfile

    programs = {
        "job-fails": "import sys\nsys.exit('no data in ' + sys.argv[1])\n",
        "job-works": (
            "import os, pathlib, sys\n"
            "rows = sorted(p.name for p in pathlib.Path(os.environ['SM_CHANNEL_TRAIN']).iterdir())\n"
            "model = pathlib.Path(os.environ['SM_MODEL_DIR'])\n"
            "assert model.is_dir() and pathlib.Path(os.environ['SM_OUTPUT_DATA_DIR']).is_dir()\n"
            "(model / 'seen.txt').write_text(','.join(rows) + ' ' + sys.argv[2])\n"
        ),
    }
    # the module's stack: one local stack per process at a time
    s3 = aws.server.client("s3")
    s3.create_bucket(Bucket="jobs")
    s3.put_object(Bucket="jobs", Key="train/a.png", Body=b"a")
    for name, program in programs.items():
        sagemaker = start_training_job(aws, "jobs", name, program)
    waiter = sagemaker.get_waiter("training_job_completed_or_stopped")
    waiter.wait(TrainingJobName="job-works", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    works = sagemaker.describe_training_job(TrainingJobName="job-works")
    assert works["TrainingJobStatus"] == "Completed"
    artifact = s3.get_object(Bucket="jobs", Key="models/job-works/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(artifact), mode="r:gz") as archive:
        member = archive.extractfile("seen.txt")
        assert member is not None and member.read() == b"a.png 3"
    with pytest.raises(Exception, match="Failed"):
        waiter.wait(TrainingJobName="job-fails", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    fails = sagemaker.describe_training_job(TrainingJobName="job-fails")
    assert fails["TrainingJobStatus"] == "Failed" and "no data in --epochs" in fails["FailureReason"]


def test_a_second_stack_in_the_process_is_refused_and_the_first_keeps_working(aws: Aws) -> None:
    """The adapters are process-wide: a second installation would take over the first stack's
    functions, and stopping it would strip them; it is refused, and undoing an installation that is
    not the current one undoes nothing."""
    from service.moto_adapters import AdaptersInUse, current, uninstall_all

    installed = current()
    assert installed is aws.server.adapters
    with pytest.raises(AdaptersInUse, match="already running"):
        start_moto_server()
    uninstall_all(dataclasses.replace(installed))  # a stale installation's stop
    assert current() is installed
    name, _ = aws.function("tests.fake.echo", env={"TAG": "still-here"})
    response, payload = _invoke(aws, name, {})
    assert "FunctionError" not in response and payload["tag"] == "still-here"


def test_a_training_job_past_its_runtime_or_at_stack_stop_ends_stopped(aws: Aws) -> None:
    """SageMaker stops a job at MaxRuntimeInSeconds (Stopped, MaxRuntimeExceeded); stopping the stack
    stops running jobs instead of waiting out their runtime."""
    from service.moto_adapters import sagemaker_training

    aws.server.client("s3").create_bucket(Bucket="slow-jobs")
    sleeper = "import time\ntime.sleep(120)\n"
    sagemaker = start_training_job(aws, "slow-jobs", "job-overruns", sleeper, max_runtime_s=1)
    waiter = sagemaker.get_waiter("training_job_completed_or_stopped")
    waiter.wait(TrainingJobName="job-overruns", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    overran = sagemaker.describe_training_job(TrainingJobName="job-overruns")
    assert (overran["TrainingJobStatus"], overran["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")

    start_training_job(aws, "slow-jobs", "job-interrupted", sleeper, max_runtime_s=600)
    started = time.monotonic()
    sagemaker_training.uninstall()
    try:
        # the job sleeps 120 s: a stop that waited it out would take that long (a margin for load)
        assert time.monotonic() - started < 60, "the stop did not wait out the job"
        interrupted = sagemaker.describe_training_job(TrainingJobName="job-interrupted")
        assert interrupted["TrainingJobStatus"] == "Stopped"
    finally:
        sagemaker_training.install()


def test_conditional_puts_of_one_version_let_exactly_one_write_win(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3_atomic_writes: eight writers that all read the same ETag race If-Match puts; as on S3,
    one write lands and the rest get 412 (moto alone let several pass its check, then overwrite).
    The injected fault: a slow write, which widens the gap between moto's check and its write."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from botocore.exceptions import ClientError
    from moto.s3.models import S3Backend

    write_object = S3Backend.put_object

    def slow_write(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return write_object(*args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", slow_write)
    server = aws.server
    s3 = server.client("s3")
    s3.create_bucket(Bucket="conditional-writes")
    etag = s3.put_object(Bucket="conditional-writes", Key="record.json", Body=b"0")["ETag"]
    start = threading.Barrier(8)

    def write(round_number: int, n: int) -> bool:
        start.wait()
        body = f"round {round_number} writer {n}".encode()  # each write a new ETag
        try:
            s3.put_object(Bucket="conditional-writes", Key="record.json", Body=body, IfMatch=etag)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "PreconditionFailed"
            return False
        return True

    for round_number in range(5):
        with ThreadPoolExecutor(8) as pool:
            won = sum(pool.map(write, [round_number] * 8, range(8)))
        assert won == 1
        etag = s3.head_object(Bucket="conditional-writes", Key="record.json")["ETag"]


@pytest.mark.parametrize("replacement", ["overwrite", "delete"])
def test_a_read_racing_a_replacement_returns_the_whole_version_it_found(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, replacement: str
) -> None:
    """s3_read_consistency: a GetObject that found a version before another request overwrote or
    deleted it returns that version, as S3 does (moto alone closed its buffer: a 500).
    The injected fault: a read held between finding the object and reading its bytes."""
    from moto.s3.responses import S3Response

    find_object = S3Response._get_key
    found, replaced = threading.Event(), threading.Event()

    def held_read(*args: Any, **kwargs: Any) -> Any:
        found_version = find_object(*args, **kwargs)
        if not found.is_set():
            found.set()
            assert replaced.wait(30), "the replacement never came"
        return found_version

    s3 = aws.server.client("s3")
    s3.create_bucket(Bucket="replaced-reads")
    s3.put_object(Bucket="replaced-reads", Key="record.json", Body=b"the version read")
    monkeypatch.setattr(S3Response, "_get_key", held_read)
    with ThreadPoolExecutor(1) as pool:
        read = pool.submit(s3.get_object, Bucket="replaced-reads", Key="record.json")
        assert found.wait(30)
        if replacement == "overwrite":
            s3.put_object(Bucket="replaced-reads", Key="record.json", Body=b"the next version")
        else:
            s3.delete_object(Bucket="replaced-reads", Key="record.json")
        replaced.set()
        assert read.result(timeout=30)["Body"].read() == b"the version read"


def test_replaced_versions_stay_readable_for_the_grace_period_then_are_closed(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3_read_consistency: a replaced version's buffer is not closed at once (a read may hold it),
    nor kept open for ever (moto keeps every key object, so garbage collection never closes it)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from service.moto_adapters import s3_read_consistency

    monkeypatch.setattr(s3_read_consistency.retired, "grace_s", 0.3)
    s3 = aws.server.client("s3")
    s3.create_bucket(Bucket="grace-period")
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    replaced = []
    for n in range(5):
        s3.put_object(Bucket="grace-period", Key="record.json", Body=f"version {n}".encode())
        replaced.append(cast(Any, backend.get_object("grace-period", "record.json")))
    assert [version.value for version in replaced[:-1]] == [f"version {n}".encode() for n in range(4)]
    time.sleep(0.4)
    s3.put_object(Bucket="grace-period", Key="record.json", Body=b"version 5")
    assert all(version.disposed and version._value_buffer.closed for version in replaced[:-1])
    assert replaced[-1].value == b"version 4", "replaced just now: still readable"
    assert cast(Any, backend.get_object("grace-period", "record.json")).value == b"version 5"


def test_a_read_racing_the_first_etag_of_its_version_gets_every_byte(aws: Aws) -> None:
    """s3_read_consistency: moto computes a version's ETag on first use from the buffer its reads
    share, without their lock. The injected fault: a buffer slow between a seek and a read, so the
    ETag's pass and a read interleave."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    class SlowSeekBuffer:
        def __init__(self, buffer: Any) -> None:
            self._buffer = buffer

        def seek(self, *args: Any) -> Any:
            position = self._buffer.seek(*args)
            time.sleep(0.05)
            return position

        def __getattr__(self, name: str) -> Any:
            return getattr(self._buffer, name)

    s3 = aws.server.client("s3")
    s3.create_bucket(Bucket="first-etag")
    body = b"x" * 4096
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    version: Any = backend.put_object("first-etag", "fresh.bin", body)  # the backend's put: no ETag yet
    version._value_buffer = SlowSeekBuffer(version._value_buffer)
    with ThreadPoolExecutor(2) as pool:
        etag = pool.submit(lambda: version.etag)
        time.sleep(0.01)
        value = pool.submit(lambda: version.value)
        assert value.result(timeout=10) == body
        assert etag.result(timeout=10) == '"' + hashlib.md5(body).hexdigest() + '"'


def test_concurrent_puts_to_a_versioned_key_each_keep_their_version(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3_atomic_writes: every put that returned a version id has its version listed, as on S3
    (moto alone read the key's version list, then wrote it back: one put could drop another's).
    The injected fault: a slow read of the version list, which widens that gap."""
    from moto.s3.utils import _VersionedKeyStore

    slow_down(monkeypatch, _VersionedKeyStore, "getlist", 0.01)
    s3 = aws.server.client("s3")
    s3.create_bucket(Bucket="versioned-writes")
    s3.put_bucket_versioning(Bucket="versioned-writes", VersioningConfiguration={"Status": "Enabled"})
    start = threading.Barrier(6)

    def put(n: int) -> str:
        start.wait()
        written = s3.put_object(Bucket="versioned-writes", Key="k", Body=f"writer {n}".encode())
        return str(written["VersionId"])

    with ThreadPoolExecutor(6) as pool:
        returned = set(pool.map(put, range(6)))
    listed = {v["VersionId"] for v in s3.list_object_versions(Bucket="versioned-writes")["Versions"]}
    assert returned <= listed and len(listed) == 6


def test_racing_starts_of_one_execution_name_start_one_execution(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sfn_execution_names: four StartExecution calls with one name (other inputs) race; as on AWS,
    one starts and three get ExecutionAlreadyExists (moto alone checked, then added: several started).
    The injected fault: a slow name check, which widens the gap between the check and the add."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.models import StateMachine

    slow_down(monkeypatch, StateMachine, "_handle_name_input_idempotency", 0.05)
    machine = aws.sfn.create_state_machine(
        name=aws.name("named-once"),
        roleArn=ROLE_ARN,
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    start = threading.Barrier(4)

    def start_run(n: int) -> bool:
        start.wait()
        try:
            aws.sfn.start_execution(stateMachineArn=machine, name="upload-v1", input=json.dumps({"n": n}))
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ExecutionAlreadyExists"
            return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(start_run, range(4))) == 1
    assert len(aws.sfn.list_executions(stateMachineArn=machine)["executions"]) == 1


def slow_down(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, seconds: float) -> None:
    """The race tests' injected fault: `owner.name` returns `seconds` late, widening the gap between
    what moto reads and what it writes next."""
    original = getattr(owner, name)

    def slowed(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        time.sleep(seconds)
        return result

    monkeypatch.setattr(owner, name, slowed)
