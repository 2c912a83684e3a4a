"""The embedded stack's data across restarts: a snapshot written on a clean stop, restored on start.

moto keeps every resource in memory. `save()` writes what the service's users keep there (the data
bucket's objects, which include the outcome records; the queues' messages; the CloudWatch metrics)
into `<data dir>/snapshot/`; `restore()` puts it back into a freshly provisioned stack before the
reconciler re-drives any upload whose run the stop cut off. Only public APIs are used, so the same
code would copy the data between any two stacks.

- Objects are restored with the bucket's event notifications off: restoring is not uploading.
- File names are hashes: an object key is data and never becomes a path on this disk.
- Metrics come back per minute: counts exactly, as one statistic set (count, sum, min, max); the
  metrics read as percentiles (confidence, latency) as their deciles, each carrying a tenth of the
  minute's count, since CloudWatch computes percentiles only from single values: counts stay exact,
  percentiles and sums come back approximately.
- The snapshot is written beside the old one and swapped in by renames, so a crash mid-save
  leaves the previous snapshot whole.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError

from monitoring.review import outcome_record_of
from scones.objects import OUTCOME_PREFIXES, ObjectRef, label_key
from service.queues import receive_all
from workflow.names import METRICS_NAMESPACE

_log = logging.getLogger(__name__)
SNAPSHOT_FORMAT: Final = 1
METRICS_KEPT: Final = timedelta(days=14)
# metrics read as percentiles: kept as per-minute deciles (the 5th, 15th, ..., 95th percentiles)
DISTRIBUTION_METRICS: Final = frozenset({"Confidence", "InferenceLatency"})
DECILES: Final = tuple(f"p{q}" for q in range(5, 100, 10))


@dataclass
class SnapshotSummary:
    objects: int = 0
    messages: int = 0
    datapoints: int = 0


def _file_name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def save(
    client: Any, bucket: str, queue_urls: dict[str, str], data_dir: Path, *, review_queue: str | None = None
) -> SnapshotSummary:
    """Write the stack's data to `data_dir/snapshot` (replacing the previous snapshot atomically).

    A queue is read whole, but a message a reviewer holds (on screen, or skipped) is invisible then:
    for `review_queue`, every `review/` record with no label and no message is saved as a message.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / "snapshot.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)  # copies of every upload and label: the user's own
    (staging / "objects").mkdir()
    summary = SnapshotSummary()
    s3 = client("s3")
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=item["Key"])
            name = _file_name(item["Key"])
            (staging / "objects" / name).write_bytes(got["Body"].read())
            objects.append(
                {
                    "key": item["Key"],
                    "etag": item["ETag"].strip('"'),
                    "content_type": got.get("ContentType", "binary/octet-stream"),
                    "file": name,
                }
            )
    summary.objects = len(objects)
    sqs = client("sqs")
    queues = {name: _saved_messages(sqs, name, url) for name, url in queue_urls.items()}
    if review_queue in queues:
        queues[review_queue] += _held_for_review(objects, queues[review_queue], staging / "objects")
    summary.messages = sum(len(messages) for messages in queues.values())
    metrics = _metric_datapoints(client("cloudwatch"))
    summary.datapoints = sum(len(metric["datapoints"]) for metric in metrics)
    index = {
        "format": SNAPSHOT_FORMAT,
        "saved_at": datetime.now(UTC).isoformat(),
        "bucket": bucket,
        "objects": objects,
        "queues": queues,
        "metrics": metrics,
        "summary": asdict(summary),
    }
    (staging / "index.json").write_text(json.dumps(index, default=str))
    current, previous = data_dir / "snapshot", data_dir / "snapshot.previous"
    if (previous / "index.json").exists() and not current.exists():
        previous.rename(current)  # the last save stopped between its renames: keep what it left
    shutil.rmtree(previous, ignore_errors=True)
    if current.exists():
        current.rename(previous)
    staging.rename(current)
    shutil.rmtree(previous, ignore_errors=True)
    return summary


MISSING_QUEUE_CODES: Final = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


def _saved_messages(sqs: Any, name: str, url: str) -> list[dict[str, Any]]:
    """The queue's messages; none for a queue someone deleted (the next start makes it again, and the
    review items come back from their `review/` records): a missing queue must not cost the data."""
    try:
        messages = receive_all(sqs, url, visibility_s=300, attributes=True, wait_s=0)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in MISSING_QUEUE_CODES:
            raise
        _log.warning("queue %s is gone: saved as empty (the next start creates it again)", name)
        return []
    return [{"body": m["Body"], "attributes": m.get("MessageAttributes", {})} for m in messages]


def _held_for_review(
    objects: list[dict[str, Any]], queued: list[dict[str, Any]], files: Path
) -> list[dict[str, Any]]:
    """Messages for the review records that await a label but are on no visible message."""
    keys = {item["key"] for item in objects}
    versions = {item["key"]: item["etag"] for item in objects}
    waiting = {(body.get("key"), body.get("etag")) for body in (outcome_record_of(m["body"]) for m in queued)}
    held = []
    for item in objects:
        if not item["key"].startswith("review/"):
            continue
        record = outcome_record_of((files / item["file"]).read_text(errors="replace"))
        if not record:  # not an outcome record: saved as an object, never made a message
            continue
        obj = ObjectRef(record["bucket"], record["key"], record["etag"])
        if versions.get(obj.key) != obj.etag:
            continue  # the reviewed version is gone or overwritten: a reviewer drops it, so do we
        if label_key(obj) not in keys and (obj.key, obj.etag) not in waiting:
            held.append({"body": json.dumps(record), "attributes": {}})
    return held


def _query(metric: dict[str, Any], period_s: int, stat: str, query_id: str) -> dict[str, Any]:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": METRICS_NAMESPACE,
                "MetricName": metric["name"],
                "Dimensions": metric["dimensions"],
            },
            "Period": period_s,
            "Stat": stat,
        },
    }


def _windows_with_data(
    cloudwatch: Any, metric: dict[str, Any], windows: list[datetime], span: timedelta, period: timedelta
) -> list[datetime]:
    """The `period`-long parts of each `span`-long window that hold data points of `metric`."""
    found = []
    for start in windows:
        result = cloudwatch.get_metric_data(
            MetricDataQueries=[_query(metric, int(period.total_seconds()), "SampleCount", "c")],
            StartTime=start,
            EndTime=start + span,
        )["MetricDataResults"][0]
        found += [t for t, count in zip(result["Timestamps"], result["Values"], strict=True) if count]
    return sorted(found)


def _metric_datapoints(cloudwatch: Any) -> list[dict[str, Any]]:
    """Every metric's per-minute statistic sets, read with GetMetricData (exact dimension sets).

    Narrowed day, then hour, then minute: moto walks every period of a query's window, so asking
    for 14 days by the minute at once took minutes once a few thousand data points were stored.
    """
    end = datetime.now(UTC) + timedelta(minutes=1)
    listed: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=METRICS_NAMESPACE):
        for metric in page["Metrics"]:
            entry = {"name": metric["MetricName"], "dimensions": metric.get("Dimensions", [])}
            if entry not in listed:  # moto lists a metric once per data point
                listed.append(entry)
    statistics = ("SampleCount", "Sum", "Minimum", "Maximum")
    day, hour = timedelta(days=1), timedelta(hours=1)
    metrics = []
    for metric in listed:
        days = _windows_with_data(cloudwatch, metric, [end - METRICS_KEPT], METRICS_KEPT, day)
        points = []
        for start in _windows_with_data(cloudwatch, metric, days, day, hour):
            asked = statistics + (DECILES if metric["name"] in DISTRIBUTION_METRICS else ())
            queries = [_query(metric, 60, stat, f"s{n}") for n, stat in enumerate(asked)]
            results = cloudwatch.get_metric_data(
                MetricDataQueries=queries, StartTime=start, EndTime=start + hour
            )["MetricDataResults"]
            by_stat = {
                asked[int(r["Id"][1:])]: dict(zip(r["Timestamps"], r["Values"], strict=True)) for r in results
            }
            points += [
                {
                    "timestamp": timestamp.isoformat(),
                    "count": count,
                    "sum": by_stat["Sum"][timestamp],
                    "min": by_stat["Minimum"][timestamp],
                    "max": by_stat["Maximum"][timestamp],
                    **(
                        {"deciles": [by_stat[d][timestamp] for d in DECILES]}
                        if all(timestamp in by_stat.get(d, {}) for d in DECILES)
                        else {}
                    ),
                }
                for timestamp, count in sorted(by_stat["SampleCount"].items())
                if count
            ]
        if points:
            metrics.append({**metric, "datapoints": points})
    return metrics


def restore(client: Any, bucket: str, queue_urls: dict[str, str], data_dir: Path) -> SnapshotSummary | None:
    """Put a snapshot back into a freshly provisioned stack; None when there is none."""
    snapshot = data_dir / "snapshot"
    if (data_dir / "snapshot.partial").exists():
        _log.warning(
            "%s holds an unfinished save (the last stop failed while saving): restoring the last "
            "complete snapshot, if any; the next save replaces the partial one (copy it now to keep it)",
            data_dir / "snapshot.partial",
        )
    if not (snapshot / "index.json").exists():
        snapshot = data_dir / "snapshot.previous"  # a save stopped between its two renames
    if not (snapshot / "index.json").exists():
        return None
    index = json.loads((snapshot / "index.json").read_text())
    if index.get("format") != SNAPSHOT_FORMAT:
        raise RuntimeError(
            f"{snapshot} has snapshot format {index.get('format')}, expected {SNAPSHOT_FORMAT}"
        )
    summary = SnapshotSummary()
    from service.provision import BUCKET_NOTIFICATIONS

    s3 = client("s3")
    # moto 5.2.5's GetBucketNotificationConfiguration leaves out EventBridgeConfiguration, so the
    # provisioned configuration is put back from its one definition, not read back
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    try:
        changed: dict[str, tuple[str, str]] = {}
        for item in index["objects"]:
            body = (snapshot / "objects" / item["file"]).read_bytes()
            put = s3.put_object(Bucket=bucket, Key=item["key"], Body=body, ContentType=item["content_type"])
            etag = put["ETag"].strip('"')
            if etag != item["etag"]:  # a multipart upload's ETag: the records follow the new one
                changed[item["key"]] = (item["etag"], etag)
            summary.objects += 1
        _move_records(s3, bucket, changed)
    finally:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=BUCKET_NOTIFICATIONS
        )
    sqs = client("sqs")
    for name, messages in index["queues"].items():
        if name not in queue_urls:
            continue
        for start in range(0, len(messages), 10):
            entries = [
                {
                    "Id": str(n),
                    "MessageBody": m["body"],
                    **({"MessageAttributes": m["attributes"]} if m["attributes"] else {}),
                }
                for n, m in enumerate(messages[start : start + 10])
            ]
            sqs.send_message_batch(QueueUrl=queue_urls[name], Entries=entries)
            summary.messages += len(entries)
    cloudwatch = client("cloudwatch")
    for metric in index["metrics"]:
        points = metric["datapoints"]
        for start in range(0, len(points), 150):
            cloudwatch.put_metric_data(
                Namespace=METRICS_NAMESPACE,
                MetricData=[
                    {
                        "MetricName": metric["name"],
                        "Dimensions": metric["dimensions"],
                        "Timestamp": datetime.fromisoformat(point["timestamp"]),
                        **_restored_values(point),
                    }
                    for point in points[start : start + 150]
                ],
            )
            summary.datapoints += len(points[start : start + 150])
    return summary


def _restored_values(point: dict[str, Any]) -> dict[str, Any]:
    """A saved minute as PutMetricData takes it: its deciles as single values sharing the minute's
    count (whole numbers, spread evenly, that add up to it), else its statistic set."""
    count = round(point["count"])
    deciles = point.get("deciles") or []
    if len(deciles) == len(DECILES) and count == point["count"]:
        edges = [math.floor(n * count / len(deciles) + 0.5) for n in range(len(deciles) + 1)]
        shares = [high - low for low, high in itertools.pairwise(edges)]
        kept = [(value, share) for value, share in zip(deciles, shares, strict=True) if share]
        return {"Values": [value for value, _ in kept], "Counts": [float(share) for _, share in kept]}
    return {
        "StatisticValues": {
            "SampleCount": point["count"],
            "Sum": point["sum"],
            "Minimum": point["min"],
            "Maximum": point["max"],
        }
    }


def _move_records(s3: Any, bucket: str, changed: dict[str, tuple[str, str]]) -> None:
    for key, (old, new) in changed.items():
        for kind in OUTCOME_PREFIXES:
            source = ObjectRef(bucket, key, old).outcome_key(kind)
            target = ObjectRef(bucket, key, new).outcome_key(kind)
            try:
                s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source})
            except s3.exceptions.ClientError:
                continue  # no record of this kind
            s3.delete_object(Bucket=bucket, Key=source)
