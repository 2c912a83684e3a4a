"""A review item names one version of an upload: the reviewer must see and label exactly those bytes,
against moto's S3 and SQS over loopback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitoring.review import Reviewer, export_labels, labeled_key
from scones.objects import ObjectRef
from service.moto_adapters.server import start_moto_server


@dataclass(frozen=True)
class Review:
    s3: Any
    sqs: Any
    queue: str


@pytest.fixture
def review() -> Iterator[Review]:
    """A data bucket and a review queue on a moto server of the test's own."""
    with start_moto_server() as moto:
        # moto's backends are process-wide: start from empty, not from an earlier test's labels
        moto.reset()
        s3, sqs = moto.client("s3"), moto.client("sqs")
        s3.create_bucket(Bucket="data")
        yield Review(s3, sqs, sqs.create_queue(QueueName="review")["QueueUrl"])


def test_an_overwritten_upload_is_not_shown_or_labeled_as_the_reviewed_version(review: Review) -> None:
    s3, sqs, queue = review.s3, review.sqs, review.queue
    reviewed = s3.put_object(Bucket="data", Key="inbox/x.jpg", Body=b"the reviewed bytes")
    kept = s3.put_object(Bucket="data", Key="inbox/y.jpg", Body=b"still there")
    for key, put in (("inbox/x.jpg", reviewed), ("inbox/y.jpg", kept)):
        record = {"bucket": "data", "key": key, "etag": put["ETag"].strip('"'), "label": "bicycle"}
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(record))
    s3.put_object(Bucket="data", Key="inbox/x.jpg", Body=b"other bytes, a run of their own")

    reviewer = Reviewer(s3, sqs, queue, visibility_s=30)
    items = {item.obj.key: item for item in reviewer.items(limit=2)}
    assert reviewer.image(items["inbox/x.jpg"]) is None, "the reviewed version is gone"
    assert reviewer.store(items["inbox/x.jpg"], "motorcycle") is False
    assert reviewer.image(items["inbox/y.jpg"]) == b"still there"
    assert reviewer.store(items["inbox/y.jpg"], "motorcycle") is True

    labels = [o["Key"] for o in s3.list_objects_v2(Bucket="data", Prefix="labels/").get("Contents", [])]
    assert labels == [f"labels/y.jpg/{kept['ETag'].strip(chr(34))}.json"]
    obj = ObjectRef("data", "inbox/y.jpg", kept["ETag"].strip('"'))
    copied = s3.get_object(Bucket="data", Key=labeled_key(obj, "motorcycle"))["Body"].read()
    assert hashlib.sha256(copied).digest() == hashlib.sha256(b"still there").digest()
    assert not sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages"), "both settled"


def test_a_second_message_for_a_labeled_version_is_dropped_not_shown_again(review: Review) -> None:
    """A re-driven run (a replay, a restart) can send the same version to review twice: once labeled,
    its other message is deleted instead of being put in front of a reviewer."""
    s3, sqs, queue = review.s3, review.sqs, review.queue
    put = s3.put_object(Bucket="data", Key="inbox/twice.jpg", Body=b"reviewed once")
    record = {
        "bucket": "data",
        "key": "inbox/twice.jpg",
        "etag": put["ETag"].strip('"'),
        "label": "bicycle",
    }
    for _ in range(2):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(record))
    reviewer = Reviewer(s3, sqs, queue, visibility_s=30)
    first = next(reviewer.items(limit=1))
    assert reviewer.store(first, "bicycle") is True
    assert list(reviewer.items()) == [], "the duplicate is not served"
    assert (
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessagesNotVisible"
        ]
        == "0"
    ), "and it is deleted, not left hidden"


def test_a_message_that_is_no_outcome_record_is_left_on_the_queue_and_the_session_goes_on(
    review: Review,
) -> None:
    s3, sqs, queue = review.s3, review.sqs, review.queue
    put = s3.put_object(Bucket="data", Key="inbox/ok.jpg", Body=b"fine")
    stray = sqs.send_message(QueueUrl=queue, MessageBody="not json")["MessageId"]
    record = {"bucket": "data", "key": "inbox/ok.jpg", "etag": put["ETag"].strip('"'), "label": "bicycle"}
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(record))
    reviewer = Reviewer(s3, sqs, queue, visibility_s=30)
    assert [item.obj.key for item in reviewer.items()] == ["inbox/ok.jpg"]
    assert reviewer.malformed == [stray]
    reviewer.release()
    left = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert "not json" in {message["Body"] for message in left}, "kept for a person to look at"


def _queue_record(review: Review, key: str, body: bytes) -> str:
    etag: str = review.s3.put_object(Bucket="data", Key=key, Body=body)["ETag"].strip('"')
    record = {"bucket": "data", "key": key, "etag": etag, "label": "bicycle"}
    review.sqs.send_message(QueueUrl=review.queue, MessageBody=json.dumps(record))
    return etag


def test_each_labeled_version_keeps_its_own_image_for_training(review: Review, tmp_path: Path) -> None:
    """An upload overwritten and reviewed again: both versions stay training images, each its own bytes."""
    reviewer = Reviewer(review.s3, review.sqs, review.queue, visibility_s=30)
    _queue_record(review, "inbox/same.png", b"the first version")
    assert reviewer.store(next(reviewer.items(limit=1)), "bicycle") is True
    _queue_record(review, "inbox/same.png", b"the second version")
    assert reviewer.store(next(reviewer.items(limit=1)), "bicycle") is True
    assert export_labels(review.s3, "data", tmp_path) == {"bicycle": 2, "motorcycle": 0}
    exported = sorted(path.read_bytes() for path in (tmp_path / "bicycle").iterdir())
    assert exported == [b"the first version", b"the second version"]


class FailingCopies:
    """The S3 client, but the first write of a labeled image copy fails (S3 throttling): an injected fault."""

    def __init__(self, s3: Any) -> None:
        self._s3, self.failed = s3, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **request: Any) -> Any:
        if request["Key"].startswith("labeled/") and not self.failed:
            self.failed += 1
            error = {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}
            raise self._s3.exceptions.ClientError(error, "PutObject")
        return self._s3.put_object(**request)


def test_a_failed_image_copy_leaves_no_label_and_the_item_queued(review: Review, tmp_path: Path) -> None:
    """The copy is written before the label document: a failure leaves no label without its image,
    and the item comes back to be labeled again."""
    etag = _queue_record(review, "inbox/throttled.png", b"worth a label")
    flaky = FailingCopies(review.s3)
    reviewer = Reviewer(flaky, review.sqs, review.queue, visibility_s=30)
    item = next(reviewer.items(limit=1))
    with pytest.raises(review.s3.exceptions.ClientError, match="SlowDown"):
        reviewer.store(item, "motorcycle")
    assert "Contents" not in review.s3.list_objects_v2(Bucket="data", Prefix="labels/")
    reviewer.skip(item)
    reviewer.release()  # the session ends: the item is back on the queue
    again = Reviewer(review.s3, review.sqs, review.queue, visibility_s=30)
    assert again.store(next(again.items(limit=1)), "motorcycle") is True
    assert export_labels(review.s3, "data", tmp_path) == {"bicycle": 0, "motorcycle": 1}
    obj = ObjectRef("data", "inbox/throttled.png", etag)
    review.s3.delete_object(Bucket="data", Key=labeled_key(obj, "motorcycle"))
    assert export_labels(review.s3, "data", tmp_path / "again") == {
        "bicycle": 0,
        "motorcycle": 0,
        "missing": 1,
    }
    assert (tmp_path / "again").is_dir(), "the folder the counts name, even with nothing in it"


def test_a_review_session_takes_an_item_whose_version_is_gone_off_the_queue(
    review: Review, tmp_path: Path
) -> None:
    """Skipped, an item that can never be labeled came back every session (and aged into the
    week-old review alarm); it is named in the tally and taken off, its review/ record kept."""
    from monitoring.review import review_queue

    s3, sqs, queue = review.s3, review.sqs, review.queue
    _queue_record(review, "inbox/overwritten.jpg", b"the reviewed bytes")
    s3.put_object(Bucket="data", Key="inbox/overwritten.jpg", Body=b"new bytes, a run of their own")

    def never_asked(*_: Any) -> Any:
        raise AssertionError("a gone version is not shown")

    tally = review_queue(Reviewer(s3, sqs, queue, visibility_s=30), never_asked, tmp_path)
    assert tally.gone == ["inbox/overwritten.jpg"]
    again = review_queue(Reviewer(s3, sqs, queue, visibility_s=30), never_asked, tmp_path)
    assert again.gone == [], "not back on the queue"
