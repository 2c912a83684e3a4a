"""The two speed adapters keep Step Functions' behaviour: same results, parse and clients reused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.moto_adapters import asl_parse_cache, task_clients
from service.moto_adapters.server import LocalMotoServer, start_moto_server

DEFINITION = {
    "StartAt": "Shape",
    "States": {
        "Shape": {
            "Type": "Pass",
            "Parameters": {"value.$": "$.value", "doubled.$": "States.MathAdd($.value, $.value)"},
            "Next": "Send",
        },
        "Send": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": "${QueueUrl}", "MessageBody.$": "$"},
            "ResultPath": None,
            "End": True,
        },
    },
}


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalMotoServer]:
    with start_moto_server() as server:
        yield server


def run(aws: LocalMotoServer, arn: str, value: int) -> dict[str, Any]:
    sfn = aws.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=arn, name=f"run-{value}", input=json.dumps({"value": value})
    )["executionArn"]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not finish"
        time.sleep(0.02)
    return dict(described)


def test_executions_share_one_parse_and_one_client_and_still_succeed(aws: LocalMotoServer) -> None:
    assert asl_parse_cache.is_installed() and task_clients.is_installed()
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="speed-adapters")["QueueUrl"]
    definition = json.dumps(DEFINITION).replace("${QueueUrl}", queue)
    before = asl_parse_cache.cached_definitions()
    arn = aws.client("stepfunctions").create_state_machine(
        name="speed-adapters", definition=definition, roleArn="arn:aws:iam::123456789012:role/states"
    )["stateMachineArn"]
    results = [run(aws, arn, value) for value in (1, 2, 3)]
    assert [r["status"] for r in results] == ["SUCCEEDED"] * 3
    assert [json.loads(r["output"]) for r in results] == [{"value": v, "doubled": 2 * v} for v in (1, 2, 3)]
    assert asl_parse_cache.cached_definitions() == before + 1, "validation and three executions, one parse"
    assert len(task_clients.clients()) >= 1
    bodies = sorted(
        json.loads(m["Body"])["value"]
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    )
    assert bodies == [1, 2, 3]


RETRYING = {
    "StartAt": "Send",
    "States": {
        "Send": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": "http://127.0.0.1:1/123456789012/missing", "MessageBody.$": "$"},
            "Retry": [
                {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1}
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gave up"}],
            "End": True,
        },
        "Gave up": {"Type": "Pass", "End": True},
    },
}


def test_concurrent_executions_of_one_shared_program_count_their_retries_apart(aws: LocalMotoServer) -> None:
    """Retry attempt numbers live in each execution's heap, so sharing the parsed program is safe."""
    sfn = aws.client("stepfunctions")
    arn = sfn.create_state_machine(
        name="shared-retries",
        definition=json.dumps(RETRYING),
        roleArn="arn:aws:iam::123456789012:role/states",
    )["stateMachineArn"]
    executions = [
        sfn.start_execution(stateMachineArn=arn, name=f"retry-{n}", input=json.dumps({"n": n}))[
            "executionArn"
        ]
        for n in range(4)
    ]
    deadline = time.monotonic() + 60
    for execution in executions:
        while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
            assert time.monotonic() < deadline, "execution did not finish"
            time.sleep(0.05)
        events = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        scheduled = [event for event in events if event["type"] == "TaskScheduled"]
        assert len(scheduled) == 3, "one attempt and two retries, whatever the other executions did"
        assert sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED"


def test_every_component_of_a_cached_program_has_its_heap_key_before_it_is_shared() -> None:
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    program, _ = AmazonStateLanguageParser.parse(json.dumps(RETRYING))
    components = []
    pending: list[Any] = [program]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, EvalComponent):
            components.append(item)
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif type(item).__module__.startswith("moto.stepfunctions") and hasattr(item, "__dict__"):
            pending.extend(vars(item).values())
    assert len(components) > 5
    assert all(vars(c).get("_EvalComponent__heap_key") for c in components)
    assert AmazonStateLanguageParser.parse(json.dumps(RETRYING))[0] is program


def test_the_dispatch_cache_answers_what_moto_finds_on_disk(aws: LocalMotoServer) -> None:
    from pathlib import Path

    import moto
    from moto import backends

    from service.moto_adapters import dispatch_cache

    assert dispatch_cache.is_installed()
    root = Path(moto.__file__).parent
    on_disk = sorted(path.name for path in root.iterdir() if path.is_dir() and not path.name.startswith("__"))
    assert list(backends.list_of_moto_modules()) == on_disk
    assert "s3" in on_disk and "stepfunctions" in on_disk


def test_in_process_clients_skip_the_socket_and_get_the_same_answers(aws: LocalMotoServer) -> None:
    """Requests for the running server go straight to its WSGI app: bodies, errors and headers intact;
    requests for any other address are left to the network."""
    import hashlib

    from botocore.awsrequest import AWSPreparedRequest, HTTPHeaders
    from botocore.exceptions import ClientError

    from service.moto_adapters import in_process_transport

    assert in_process_transport.installed()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="in-process")
    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    put = s3.put_object(Bucket="in-process", Key="a/b c.bin", Body=body, ContentType="application/x-test")
    got = s3.get_object(Bucket="in-process", Key="a/b c.bin")
    assert got["Body"].read() == body and got["ContentType"] == "application/x-test"
    assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket="in-process", Key="nothing")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    queue = aws.client("sqs").create_queue(QueueName="in-process")["QueueUrl"]
    aws.client("sqs").send_message(QueueUrl=queue, MessageBody="é ünïcode")
    received = aws.client("sqs").receive_message(QueueUrl=queue)["Messages"]
    assert [m["Body"] for m in received] == ["é ünïcode"]

    sent: list[AWSPreparedRequest] = []
    s3.meta.events.register_first("before-send.s3.HeadObject", lambda request, **_: sent.append(request))
    s3.head_object(Bucket="in-process", Key="a/b c.bin")
    answered = in_process_transport.dispatch(sent[0])  # the server's own address: answered in-process
    assert answered is not None and answered.status_code == 200
    assert answered.headers["ETag"].strip('"') == hashlib.md5(body).hexdigest()

    elsewhere = AWSPreparedRequest("GET", "http://127.0.0.1:1/x", HTTPHeaders(), None, stream_output=False)
    assert in_process_transport.dispatch(elsewhere) is None, "another address: the network's business"


def test_state_copies_equal_deepcopy_and_share_nothing_with_the_original(aws: LocalMotoServer) -> None:
    import copy
    import datetime
    from collections import OrderedDict

    from moto.stepfunctions.parser.asl.eval import states

    from service.moto_adapters import sfn_state_copies

    assert sfn_state_copies.is_installed()
    assert getattr(states, "copy") is sfn_state_copies.json_aware_copy  # noqa: B009
    document: dict[str, Any] = {
        "object": {"key": "inbox/a.png", "size": 3, "ratio": 0.5, "ok": True, "none": None},
        "list": [[1, 2], {"b": "c"}],
        "empty": {},
    }
    copied = sfn_state_copies.deepcopy(document)
    assert copied == copy.deepcopy(document) == document
    copied["object"]["key"] = "changed"
    copied["list"][0].append(3)
    assert document["object"]["key"] == "inbox/a.png" and document["list"][0] == [1, 2]

    # anything not plain JSON goes to copy.deepcopy whole, which keeps shared references shared
    shared = [1]
    mixed: dict[str, Any] = {
        "when": datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC),
        "a": shared,
        "b": shared,
    }
    copied_mixed = sfn_state_copies.deepcopy(mixed)
    assert copied_mixed == mixed and copied_mixed["a"] is copied_mixed["b"]
    assert copied_mixed["a"] is not shared
    ordered = OrderedDict(a=[1])
    assert type(sfn_state_copies.deepcopy(ordered)) is OrderedDict


def test_response_timestamps_serialize_as_botocore_parses_them(aws: LocalMotoServer) -> None:
    from botocore.utils import parse_to_aware_datetime
    from moto.core.serialize import TimestampSerializer

    from service.moto_adapters import response_timestamps

    assert response_timestamps.is_installed()
    fast = response_timestamps.fast_aware_datetime(parse_to_aware_datetime)
    values = [
        "2026-11-25T07:31:00.123Z",
        "2026-11-25T07:31:00Z",
        "2026-11-25T07:31:00",
        "2026-11-25T09:31:00.5+02:00",
        "2026-11-25",  # no time: botocore's own path
        "1764056000",  # epoch seconds as text: botocore's own path
    ]
    serializer = TimestampSerializer(TimestampSerializer.TIMESTAMP_FORMAT_ISO8601)
    for value in values:
        assert fast(value) == parse_to_aware_datetime(value), value
        for form in ("iso8601", "iso8601_zeroed", "rfc822", "unixtimestamp"):
            converter = getattr(serializer, f"_timestamp_{form}")
            assert converter(fast(value)) == converter(parse_to_aware_datetime(value)), (value, form)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="timestamps")
    s3.put_object(Bucket="timestamps", Key="a", Body=b"a")
    listed = s3.list_objects_v2(Bucket="timestamps")["Contents"][0]["LastModified"]
    assert listed == s3.head_object(Bucket="timestamps", Key="a")["LastModified"]


def test_the_action_lookup_lists_a_class_once_and_sees_what_adapters_add(aws: LocalMotoServer) -> None:
    from moto.core import responses
    from moto.core.utils import method_names_from_class as uncached
    from moto.s3.responses import S3Response

    from service.moto_adapters import action_lookup_cache
    from service.moto_adapters._patching import PatchSet

    assert action_lookup_cache.is_installed()
    lookup = getattr(responses, "method_names_from_class")  # noqa: B009
    assert lookup(S3Response) == uncached(S3Response)
    assert lookup(S3Response) is lookup(S3Response), "one listing per class"
    patches = PatchSet("a test's")
    patches.replace(S3Response, "brand_new_action", lambda self: None, adding=True)
    try:
        assert "brand_new_action" in lookup(S3Response)
    finally:
        patches.restore()
    assert "brand_new_action" not in lookup(S3Response)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="action-lookup")
    assert s3.list_objects_v2(Bucket="action-lookup")["KeyCount"] == 0


def test_condition_tokens_are_reused_and_conditions_still_decide(aws: LocalMotoServer) -> None:
    from botocore.exceptions import ClientError

    from service.moto_adapters import dynamodb_condition_lexing

    assert dynamodb_condition_lexing.is_installed()
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="condition-lexing",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    condition = "attribute_not_exists(#id) OR #expiry < :now"  # powertools Idempotency's shape

    def put(key: str, expiry: int, now: int) -> str:
        try:
            dynamodb.put_item(
                TableName="condition-lexing",
                Item={"id": {"S": key}, "expiry": {"N": str(expiry)}},
                ConditionExpression=condition,
                ExpressionAttributeNames={"#id": "id", "#expiry": "expiry"},
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
            return "written"
        except ClientError as error:
            return str(error.response["Error"]["Code"])

    def decisions(prefix: str) -> list[str]:
        # new key; present and not expired; present and expired
        return [put(f"{prefix}-a", 100, 50), put(f"{prefix}-a", 100, 50), put(f"{prefix}-a", 100, 150)]

    cached = decisions("cached")
    assert dynamodb_condition_lexing.cached_expressions() >= 1
    dynamodb_condition_lexing.uninstall()
    try:
        uncached = decisions("uncached")
    finally:
        dynamodb_condition_lexing.install()
    assert cached == uncached == ["written", "ConditionalCheckFailedException", "written"]
    before = dynamodb_condition_lexing.cached_expressions()
    for _ in range(2):  # a condition that does not tokenize fails (as moto fails it) each time, uncached
        with pytest.raises(Exception, match=r"Cannot parse condition starting at:\$ id"):
            dynamodb.put_item(
                TableName="condition-lexing", Item={"id": {"S": "x"}}, ConditionExpression="id $ id"
            )
    assert dynamodb_condition_lexing.cached_expressions() == before
