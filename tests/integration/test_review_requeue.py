"""Unlabelled review items go back on the review queue before SQS's retention would drop them: the
reconcile function, built from its environment, against moto's S3 and SQS over loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from handlers import reconcile as reconcile_handler
from scones.objects import ObjectRef, label_key
from scones.outcomes import OutcomeRecord
from service.moto_adapters.lambda_runtime import InvocationContext
from service.moto_adapters.server import LocalMotoServer, start_moto_server

BUCKET = "requeue-data"


@pytest.fixture
def aws() -> Iterator[LocalMotoServer]:
    with start_moto_server() as server:
        server.client("s3").create_bucket(Bucket=BUCKET)
        yield server


def test_unlabelled_review_items_are_queued_again_once_they_are_old_enough(aws: LocalMotoServer) -> None:
    s3, sqs = aws.client("s3"), aws.client("sqs")
    queue = sqs.create_queue(QueueName="requeue-review")["QueueUrl"]
    refs = {}
    for name in ("waiting", "labelled"):
        key = f"inbox/{name}.png"
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=name.encode())["ETag"].strip('"')
        refs[name] = ObjectRef(BUCKET, key, etag)
    waiting, labelled = refs["waiting"], refs["labelled"]
    records = {}
    for obj in (waiting, labelled):
        record = OutcomeRecord(outcome="review", bucket=obj.bucket, key=obj.key, etag=obj.etag).to_json()
        s3.put_object(Bucket=BUCKET, Key=obj.outcome_key("review"), Body=record.encode())
        records[obj.key] = record
    s3.put_object(Bucket=BUCKET, Key=label_key(labelled), Body=b'{"label": "bicycle"}')
    handler = reconcile_handler.build(
        {
            "POWERTOOLS_SERVICE_NAME": "reconcile",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "SconesUnlimitedTest",
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:none",
            "BUCKET_NAME": BUCKET,
            "REVIEW_QUEUE_URL": queue,
        }
    )

    def run(**event: Any) -> dict[str, Any]:
        result: dict[str, Any] = handler(event, InvocationContext.direct("scones-reconcile"))
        return result

    assert run()["review_items_requeued"] == [], "written just now: queued 12 days ago at the earliest"
    assert run(review_requeue_after_s=0)["review_items_requeued"] == [waiting.key]
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [message["Body"] for message in received["Messages"]] == [records[waiting.key]]
    marker = s3.get_object(
        Bucket=BUCKET, Key="requeue/" + waiting.outcome_key("review").removeprefix("review/")
    )
    assert "queued_at" in json.loads(marker["Body"].read()), "when it was queued again"
    stored = s3.get_object(Bucket=BUCKET, Key=waiting.outcome_key("review"))["Body"].read()
    assert stored.decode() == records[waiting.key], "the record is left as it is"
