"""The local stack's snapshot over moto on loopback: what a reviewer holds at the stop is not lost, and a
save cut off between its renames still restores.

moto keeps its backends per process (the session's other stacks share them), so each test uses names
of its own, and restores into a second bucket and queue, as a fresh stack after a restart would be.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from scones.objects import ObjectRef
from service.moto_adapters.server import LocalMotoServer, start_moto_server
from service.persistence import restore, save


def names() -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    return f"snapshot-{run}", f"review-{run}"


def review_record(s3: Any, bucket: str, name: str) -> tuple[ObjectRef, dict[str, Any]]:
    """An upload and its review record (not written)."""
    etag = s3.put_object(Bucket=bucket, Key=f"inbox/{name}.png", Body=name.encode())["ETag"].strip('"')
    obj = ObjectRef(bucket, f"inbox/{name}.png", etag)
    return obj, {"outcome": "review", "bucket": bucket, "key": obj.key, "etag": obj.etag, "label": "bicycle"}


def new_stack(aws: LocalMotoServer) -> tuple[str, str, str]:
    """A bucket and a review queue of this test's own: (bucket, queue name, queue URL)."""
    bucket, queue = names()
    aws.client("s3").create_bucket(Bucket=bucket)
    return bucket, queue, aws.client("sqs").create_queue(QueueName=queue)["QueueUrl"]


def restored_into_a_fresh_stack(
    aws: LocalMotoServer, queue: str, data_dir: Path
) -> tuple[list[dict[str, Any]], set[str]]:
    """Restore the snapshot into a new bucket and queue, as a restarted stack would: the queue's
    messages and the bucket's keys."""
    fresh_bucket, fresh_queue = names()
    s3, sqs = aws.client("s3"), aws.client("sqs")
    s3.create_bucket(Bucket=fresh_bucket)
    fresh_url = sqs.create_queue(QueueName=fresh_queue)["QueueUrl"]
    restore(aws.client, fresh_bucket, {queue: fresh_url}, data_dir)
    messages: list[dict[str, Any]] = sqs.receive_message(QueueUrl=fresh_url, MaxNumberOfMessages=10)[
        "Messages"
    ]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=fresh_bucket)["Contents"]}
    return messages, keys


def test_review_items_held_by_a_reviewer_at_the_stop_come_back_and_no_item_twice(tmp_path: Path) -> None:
    with start_moto_server() as aws:
        s3, sqs = aws.client("s3"), aws.client("sqs")
        bucket, queue, url = new_stack(aws)
        records = dict(
            review_record(s3, bucket, name) for name in ("held", "waiting", "labeled", "overwritten")
        )
        for obj, record in records.items():
            s3.put_object(Bucket=bucket, Key=obj.outcome_key("review"), Body=json.dumps(record).encode())
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
        s3.put_object(Bucket=bucket, Key="inbox/overwritten.png", Body=b"a new version, a run of its own")
        labeled = next(obj for obj in records if obj.key.endswith("labeled.png"))
        rest = labeled.outcome_key("review").removeprefix("review/")
        s3.put_object(Bucket=bucket, Key=f"labels/{rest}", Body=b"{}")
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)["Messages"]
        for message in got:  # the labeled one is deleted; "held" stays on a reviewer's screen
            key = json.loads(message["Body"])["key"]
            handle = message["ReceiptHandle"]
            if key.endswith(("labeled.png", "overwritten.png")):  # labeled; dropped by the reviewer
                sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
            elif key.endswith("waiting.png"):
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
        save(aws.client, bucket, {queue: url}, tmp_path, review_queue=queue)
        back, _ = restored_into_a_fresh_stack(aws, queue, tmp_path)
    assert sorted(json.loads(message["Body"])["key"] for message in back) == [
        "inbox/held.png",
        "inbox/waiting.png",
    ]


def test_a_save_cut_off_between_its_two_renames_is_still_restored(tmp_path: Path) -> None:
    (bucket, _), (fresh_bucket, _) = names(), names()
    with start_moto_server() as aws:
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="inbox/kept.png", Body=b"png")
        save(aws.client, bucket, {}, tmp_path)
        (tmp_path / "snapshot").rename(tmp_path / "snapshot.previous")  # where a cut-off save leaves it
        s3.create_bucket(Bucket=fresh_bucket)
        summary = restore(aws.client, fresh_bucket, {}, tmp_path)
        assert summary is not None and summary.objects == 1
        assert s3.get_object(Bucket=fresh_bucket, Key="inbox/kept.png")["Body"].read() == b"png"
        save(aws.client, fresh_bucket, {}, tmp_path)
    assert (tmp_path / "snapshot" / "index.json").exists() and not (tmp_path / "snapshot.previous").exists()


def test_a_malformed_review_message_or_record_does_not_stop_the_save(tmp_path: Path) -> None:
    """The review queue may hold a message that is no outcome record (the reviewer leaves it there):
    the save keeps it as it is, and every other item too, instead of failing and saving nothing."""
    with start_moto_server() as aws:
        s3, sqs = aws.client("s3"), aws.client("sqs")
        bucket, queue, url = new_stack(aws)
        obj, record = review_record(s3, bucket, "fine")
        s3.put_object(Bucket=bucket, Key=obj.outcome_key("review"), Body=json.dumps(record).encode())
        s3.put_object(Bucket=bucket, Key="review/broken.png/e1.json", Body=b"{not a record")
        for body in ("not json", json.dumps(record)):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        save(aws.client, bucket, {queue: url}, tmp_path, review_queue=queue)
        back, restored = restored_into_a_fresh_stack(aws, queue, tmp_path)
    assert sorted(message["Body"] for message in back) == sorted(["not json", json.dumps(record)])
    assert {"review/broken.png/e1.json", obj.outcome_key("review")} <= restored


def test_a_deleted_queue_does_not_cost_the_save_and_its_review_items_come_back(tmp_path: Path) -> None:
    """Someone deleted the review queue (a fault the README lists) and stopped the stack: the save
    keeps every object, and the review items come back from their records on a fresh queue."""
    with start_moto_server() as aws:
        s3, sqs = aws.client("s3"), aws.client("sqs")
        bucket, queue, url = new_stack(aws)
        obj, record = review_record(s3, bucket, "queued")
        s3.put_object(Bucket=bucket, Key=obj.outcome_key("review"), Body=json.dumps(record).encode())
        sqs.delete_queue(QueueUrl=url)
        summary = save(aws.client, bucket, {queue: url}, tmp_path, review_queue=queue)
        assert summary.objects == 2 and not (tmp_path / "snapshot.partial").exists()
        back, restored = restored_into_a_fresh_stack(aws, queue, tmp_path)
    assert [json.loads(message["Body"])["key"] for message in back] == [obj.key]
    assert {obj.key, obj.outcome_key("review")} <= restored


def test_percentiles_come_back_close_and_counts_exactly(tmp_path: Path) -> None:
    """CloudWatch computes percentiles only from single values: a minute saved as a statistic set
    would answer every percentile with its mean. The confidence comes back as deciles instead."""
    import random
    from datetime import UTC, datetime, timedelta

    from workflow.names import METRICS_NAMESPACE

    (bucket, _), service = names(), f"persist-{uuid.uuid4().hex[:8]}"
    rng = random.Random(3)
    values = [rng.uniform(0.5, 1.0) for _ in range(137)]
    dimensions = [{"Name": "service", "Value": service}]

    def read(cloudwatch: Any) -> dict[str, float]:
        queries = [
            {
                "Id": stat.lower(),
                "MetricStat": {
                    "Metric": {
                        "Namespace": METRICS_NAMESPACE,
                        "MetricName": "Confidence",
                        "Dimensions": dimensions,
                    },
                    "Period": 3600,
                    "Stat": stat,
                },
            }
            for stat in ("p10", "p50", "p90", "SampleCount")
        ]
        now = datetime.now(UTC)
        results = cloudwatch.get_metric_data(
            MetricDataQueries=queries,
            StartTime=now - timedelta(minutes=30),
            EndTime=now + timedelta(minutes=1),
        )["MetricDataResults"]
        return {r["Id"]: sum(r["Values"]) for r in results}

    with start_moto_server() as aws:
        aws.client("s3").create_bucket(Bucket=bucket)
        cloudwatch = aws.client("cloudwatch")
        for start in range(0, len(values), 50):
            cloudwatch.put_metric_data(
                Namespace=METRICS_NAMESPACE,
                MetricData=[
                    {"MetricName": "Confidence", "Dimensions": dimensions, "Value": value}
                    for value in values[start : start + 50]
                ],
            )
        before = read(cloudwatch)
        save(aws.client, bucket, {}, tmp_path)
        aws.reset()  # a fresh stack, as after a restart
        assert read(cloudwatch)["samplecount"] == 0
        aws.client("s3").create_bucket(Bucket=bucket)
        restore(aws.client, bucket, {}, tmp_path)
        after = read(cloudwatch)
    assert after["samplecount"] == before["samplecount"] == len(values)
    for stat in ("p10", "p50", "p90"):
        assert abs(after[stat] - before[stat]) <= 0.05, (stat, before, after)
    assert after["p10"] < after["p50"] < after["p90"], "a distribution, not one mean"
