"""Unlabelled review items go back on the queue every 12 days, with the clock in a marker; labelled,
deleted and overwritten ones never do, and only the records due are read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scones.objects import ObjectRef, label_key
from scones.outcomes import OutcomeRecord
from scones.reconcile import StoredObject
from scones.review_requeue import requeue_unlabelled

START = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass
class ClockedBucket:
    """S3 as the requeue sees it: objects with their write times, a clock, and the reads made."""

    now: datetime = START
    objects: dict[str, tuple[bytes, str, datetime]] = field(default_factory=dict)  # key → body, etag, written
    reads: list[str] = field(default_factory=list)

    def put(self, key: str, body: bytes = b"{}", etag: str = "e1") -> None:
        self.objects[key] = (body, etag, self.now)

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        for key, (body, etag, written) in sorted(self.objects.items()):
            if key.startswith(prefix):
                yield StoredObject(key, f'"{etag}"', len(body), written)

    def list_current_versions(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        return self.list(bucket, prefix)

    def read(
        self, bucket: str, key: str, max_bytes: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[int, bytes | None]:
        self.reads.append(key)
        body = self.objects[key][0]
        return len(body), body

    def write_json(self, bucket: str, key: str, body: str) -> None:
        self.put(key, body.encode())

    def delete(self, bucket: str, key: str) -> None:
        self.objects.pop(key, None)


@dataclass
class MemoryQueue:
    sent: list[str] = field(default_factory=list)

    def send(self, body: str) -> None:
        self.sent.append(body)


def review_item(bucket: ClockedBucket, name: str, etag: str = "e1") -> ObjectRef:
    obj = ObjectRef("data", f"inbox/{name}", etag)
    bucket.put(obj.key, b"image", etag=etag)
    record = OutcomeRecord(outcome="review", bucket=obj.bucket, key=obj.key, etag=etag).to_json()
    bucket.put(obj.outcome_key("review"), record.encode())
    return obj


def test_an_unlabelled_item_is_queued_again_every_12_days_and_the_record_is_left_as_it_is() -> None:
    bucket, queue = ClockedBucket(), MemoryQueue()
    waiting = review_item(bucket, "waiting.png")
    record = bucket.objects[waiting.outcome_key("review")]

    def run(after: timedelta) -> list[str]:
        bucket.now = START + after
        return requeue_unlabelled("data", bucket, bucket, queue, now=bucket.now).requeued

    assert run(11 * DAY) == []
    assert run(12 * DAY) == [waiting.key]
    assert queue.sent == [record[0].decode()]
    assert run(12 * DAY + timedelta(hours=1)) == [], "queued again an hour ago"
    assert run(23 * DAY) == []
    assert run(24 * DAY) == [waiting.key], "12 days after the resend"
    assert bucket.objects[waiting.outcome_key("review")] == record, "the record is never rewritten"


def test_labelled_deleted_and_overwritten_items_are_left_out_without_reading_their_records() -> None:
    bucket, queue = ClockedBucket(), MemoryQueue()
    labelled = review_item(bucket, "labelled.png")
    bucket.put(label_key(labelled))
    deleted = review_item(bucket, "deleted.png")
    del bucket.objects[deleted.key]
    overwritten = review_item(bucket, "overwritten.png")
    bucket.put(overwritten.key, b"other bytes", etag="e2")
    waiting = review_item(bucket, "waiting.png")
    bucket.now = START + 30 * DAY
    report = requeue_unlabelled("data", bucket, bucket, queue, now=bucket.now)
    assert report.requeued == [waiting.key]
    assert bucket.reads == [waiting.outcome_key("review")], "only the record sent is read"


def test_one_item_that_cannot_be_sent_does_not_stop_the_others() -> None:
    bucket = ClockedBucket()
    first, second = review_item(bucket, "a.png"), review_item(bucket, "b.png")
    sent: list[str] = []

    class FlakyQueue:
        def send(self, body: str) -> None:
            if first.key in body:
                raise ConnectionError("SQS unreachable")
            sent.append(body)

    bucket.now = START + 12 * DAY
    report = requeue_unlabelled("data", bucket, bucket, FlakyQueue(), now=bucket.now)
    assert report.requeued == [second.key] and len(sent) == 1
    assert report.failed == {first.outcome_key("review"): "ConnectionError: SQS unreachable"}
    bucket.now += timedelta(hours=1)
    assert requeue_unlabelled("data", bucket, bucket, MemoryQueue(), now=bucket.now).requeued == [
        first.key
    ], "tried again the next hour"
