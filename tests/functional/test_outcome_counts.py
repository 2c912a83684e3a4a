"""The outcome counts equal the records: the record function counts each record it writes, once.

Runs the record handler with its powertools Idempotency table on moto's real S3 and DynamoDB, and
reads its EMF lines the way CloudWatch would (`emf_metrics.metrics_from_log_text`).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from handlers import record as record_handler
from scones.steps import filter_by_confidence
from service.moto_adapters.emf_metrics import metrics_from_log_text
from service.moto_adapters.lambda_runtime import InvocationContext
from tests.conftest import aws_client


@dataclass(frozen=True)
class Setup:
    handler: Any
    bucket: str
    s3: Any
    environment: dict[str, str]


@pytest.fixture
def record(moto_endpoint_url: str) -> Iterator[Setup]:
    suffix = uuid.uuid4().hex[:8]
    bucket, table = f"counts-{suffix}", f"idempotency-{suffix}"
    s3: Any = aws_client("s3", moto_endpoint_url)
    dynamodb: Any = aws_client("dynamodb", moto_endpoint_url)
    s3.create_bucket(Bucket=bucket)
    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    environment = {
        "POWERTOOLS_SERVICE_NAME": f"record-{suffix}",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "IDEMPOTENCY_TABLE": table,
        "AWS_ENDPOINT_URL": moto_endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    yield Setup(record_handler.build(environment), bucket, s3, environment)


def routed(bucket: str, key: str, confidence: float, execution: str) -> dict[str, Any]:
    state = {
        "object": {"bucket": bucket, "key": key, "etag": "e1"},
        "received_at": "2026-11-24T00:00:00.000Z",
        "execution_id": execution,
        "classification": {
            "probabilities": {"bicycle": confidence, "motorcycle": 1 - confidence},
            "label": "bicycle",
            "confidence": confidence,
            "model_version": "v-test",
        },
    }
    return filter_by_confidence(state, 0.85)


def failed(bucket: str, key: str, execution: str) -> dict[str, Any]:
    cause = json.dumps({"errorMessage": "endpoint down", "errorType": "EndpointUnavailable"})
    return {
        "object": {"bucket": bucket, "key": key, "etag": "e1"},
        "received_at": "2026-11-24T00:00:00.000Z",
        "execution_id": execution,
        "error": {"Error": "EndpointUnavailable", "Cause": cause},
    }


def counts(output: str) -> Counter[tuple[str, tuple[tuple[str, str], ...]]]:
    """(metric, dimensions) → summed value, as CloudWatch would publish the EMF lines."""
    totals: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for datum in metrics_from_log_text(output):
        dimensions = tuple(sorted((k, v) for k, v in datum.dimensions if k != "service"))
        totals[(datum.name, dimensions)] += int(sum(datum.values))
    return totals


def test_a_written_record_is_counted_once_alone_and_by_class(
    record: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    record.handler(
        routed(record.bucket, "inbox/a.png", 0.97, "arn:exec:a"), InvocationContext.direct("scones-record")
    )
    record.handler(
        routed(record.bucket, "inbox/b.png", 0.60, "arn:exec:b"), InvocationContext.direct("scones-record")
    )
    assert counts(capsys.readouterr().out) == {
        ("ImagesAccepted", ()): 1,
        ("ImagesAccepted", (("model_version", "v-test"), ("predicted_class", "bicycle"))): 1,
        ("ImagesSentToReview", ()): 1,
        ("ImagesSentToReview", (("model_version", "v-test"), ("predicted_class", "bicycle"))): 1,
    }


def test_a_retry_answered_from_the_idempotency_store_counts_nothing(
    record: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    failure = failed(record.bucket, "inbox/c.png", "arn:exec:c")
    first = record.handler(failure, InvocationContext.direct("scones-record"))
    key = first["record"]["record_key"]
    written = record.s3.get_object(Bucket=record.bucket, Key=key)["Body"].read()
    assert counts(capsys.readouterr().out) == {
        ("ImagesFailed", ()): 1,
        ("ImagesFailed", (("reason", "endpoint_unavailable"),)): 1,
    }
    again = record.handler(
        failure, InvocationContext.direct("scones-record")
    )  # Step Functions retried: the answer was lost
    assert again == first
    assert record.s3.get_object(Bucket=record.bucket, Key=key)["Body"].read() == written
    assert counts(capsys.readouterr().out) == {}


def test_a_failure_after_the_result_was_recorded_counts_nothing(
    record: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """RecordResult wrote, then was reported failed (timed out): RecordFailure keeps the result."""
    record.handler(
        routed(record.bucket, "inbox/d.png", 0.97, "arn:exec:d"), InvocationContext.direct("scones-record")
    )
    capsys.readouterr()
    answer = record.handler(
        failed(record.bucket, "inbox/d.png", "arn:exec:d"), InvocationContext.direct("scones-record")
    )
    assert answer["record"]["outcome"] == "accepted"
    assert counts(capsys.readouterr().out) == {}


def test_a_replay_whose_result_replaces_a_failure_counts_the_failure_replaced(
    record: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """ImagesFailed counts every failure (the alarm's series); FailuresReplaced says which ones a
    replay turned into a result, so `scones metrics` counts outcomes equal to the records."""
    from scones.objects import ObjectRef

    record.handler(
        failed(record.bucket, "inbox/e.png", "arn:exec:e"), InvocationContext.direct("scones-record")
    )
    capsys.readouterr()
    replay = ObjectRef(record.bucket, "inbox/e.png", "e1").execution_name(replay=1)
    answer = record.handler(
        routed(record.bucket, "inbox/e.png", 0.97, f"arn:exec:{replay}"),
        InvocationContext.direct("scones-record"),
    )
    assert answer["record"]["outcome"] == "accepted"
    failure_key = ObjectRef(record.bucket, "inbox/e.png", "e1").outcome_key("failed")
    assert "Contents" not in record.s3.list_objects_v2(Bucket=record.bucket, Prefix=failure_key)
    assert counts(capsys.readouterr().out) == {
        ("ImagesAccepted", ()): 1,
        ("ImagesAccepted", (("model_version", "v-test"), ("predicted_class", "bicycle"))): 1,
        ("FailuresReplaced", ()): 1,
        ("FailuresReplaced", (("reason", "endpoint_unavailable"),)): 1,
    }


def test_cold_starts_add_no_hooks_to_the_dynamodb_client_they_share(record: Setup) -> None:
    """Each powertools persistence layer registers a User-Agent hook on its client; the local runtime's
    environments of one function share a client, so a layer per cold start added one more hook, run
    on every request, with each cold start (300 images: 20 hooks a request, and growing)."""
    from handlers.aws import client
    from handlers.settings import RecordSettings

    dynamodb = client("dynamodb", RecordSettings.from_environment(record.environment))

    def hooks() -> int:  # botocore keeps a client's handlers in a trie keyed by event name
        trie = dynamodb.meta.events._emitter._handlers
        return len(list(trie.prefix_search("request-created.dynamodb.PutItem")))

    before = hooks()
    for _ in range(5):  # five more cold starts of the same function
        record_handler.build(record.environment)
    assert hooks() == before
    # the shared layer is configured when built, not by whichever first invocation reaches it
    layers = list(record_handler._persistence_layers.values())
    assert layers and all(layer.configured and layer.event_key_jmespath for layer in layers)
    record.handler(
        routed(record.bucket, "inbox/d.png", 0.97, "arn:exec:d"), InvocationContext.direct("scones-record")
    )
    assert record.s3.list_objects_v2(Bucket=record.bucket, Prefix="results/")["KeyCount"] == 1
