"""`scones review`: work through the review queue; each label a person gives is stored for retraining.

For each message (a low-confidence outcome record) the reviewer sees the image (a thumbnail file and a
terminal summary: key, probabilities, model version) and answers bicycle, motorcycle, neither or
skip. The reviewed version is copied to `labeled/<class>/<key>/<etag>`, then a label is written
under `labels/` with a conditional put (If-None-Match: two reviewers can never both store one), and
only then is the message deleted. Skipped messages stay hidden from this session and go back to
the queue, visible at once, when it ends.
`scones labels export DIR` writes the labeled images as `<class>/<image>` for training and
evaluation. Works against AWS or the local stack.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from handlers.aws import MISSING_CODES, SUPERSEDED_CODES
from scones.labels import LABELS
from scones.objects import LABELS_PREFIX, ObjectRef, label_key, record_path, s3_version_selector

Answer = Literal["bicycle", "motorcycle", "neither", "skip", "quit"]
CHOICES: Final[dict[str, Answer]] = {
    "b": "bicycle",
    "bicycle": "bicycle",
    "m": "motorcycle",
    "motorcycle": "motorcycle",
    "n": "neither",
    "neither": "neither",
    "s": "skip",
    "skip": "skip",
    "q": "quit",
    "quit": "quit",
}
LABEL_CLASSES: Final = (*LABELS, "neither")
# SQS's answers to a receipt handle whose message is no longer in flight for it
STALE_HANDLE_CODES: Final = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "InvalidParameterValue",
    }
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ReviewItem:
    record: dict[str, Any]
    receipt_handle: str
    received_at: float = field(default_factory=time.monotonic)  # when SQS hid it from others

    @property
    def obj(self) -> ObjectRef:
        version_id = self.record.get("version_id")
        return ObjectRef(
            self.record["bucket"], self.record["key"], self.record["etag"], version_id=version_id
        )


@dataclass
class ReviewTally:
    labeled: dict[str, str] = field(default_factory=dict)  # object key → label
    skipped: list[str] = field(default_factory=list)
    already_labeled: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # the image is no longer in the bucket


GONE_CODES: Final = MISSING_CODES | SUPERSEDED_CODES  # the reviewed version is deleted or overwritten


def labeled_key(obj: ObjectRef, label: str) -> str:
    """`labeled/<label>/<key below inbox/>/<etag>`: the labeled version's bytes, one copy per version
    (an overwritten upload labeled again must not replace the first version's training image)."""
    return f"labeled/{label}/{record_path(obj.key)}/{obj.etag}"


def safe_file_name(key: str, etag: str = "") -> str:
    """A local file name for an object: a hash for uniqueness, then a sanitized base name (keys are data)."""
    digest = hashlib.sha256(f"{key}@{etag}".encode()).hexdigest()[:12]
    base = _UNSAFE.sub("_", key.rsplit("/", 1)[-1]).lstrip(".") or "image"
    return f"{digest}-{base[:80]}"


def summary(item: ReviewItem) -> str:
    record = item.record
    probabilities = record.get("probabilities") or {}
    shown = ", ".join(f"{name} {probabilities[name]:.3f}" for name in LABELS if name in probabilities)
    return (
        f"{record['key']}\n  model says {record.get('label')} at {record.get('confidence')} "
        f"(threshold {record.get('threshold')}); {shown}; model {record.get('model_version')}"
    )


def outcome_record_of(body: str) -> dict[str, Any]:
    """The outcome record a review message carries; {} when it is none (not JSON, or no object named)."""
    try:
        record = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(record, dict) or not all(
        isinstance(record.get(k), str) for k in ("bucket", "key", "etag")
    ):
        return {}
    return record


class Reviewer:
    """One person's review session on the queue; `s3` and `sqs` are boto3 clients."""

    def __init__(
        self, s3: Any, sqs: Any, queue_url: str, *, reviewer: str = "reviewer", visibility_s: int = 300
    ):
        self.s3 = s3
        self.sqs = sqs
        self.queue_url = queue_url
        self.reviewer = reviewer
        self.visibility_s = visibility_s
        self._held: dict[str, float] = {}  # skipped, receipt handle → when last hidden (monotonic)
        self.malformed: list[str] = []  # ids of messages that are no outcome record (left on the queue)

    def items(self, limit: int | None = None) -> Iterator[ReviewItem]:
        """Messages from the queue, one at a time, each hidden from others while it is being reviewed."""
        served = 0
        while limit is None or served < limit:
            self.keep_held()
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=1,
                VisibilityTimeout=self.visibility_s,
                WaitTimeSeconds=1,  # long poll: a short poll of SQS can answer empty while items wait
            ).get("Messages", [])
            if not messages:
                return
            item = ReviewItem(outcome_record_of(messages[0]["Body"]), messages[0]["ReceiptHandle"])
            if not item.record:  # not one of the workflow's records: left on the queue, not shown
                self.malformed.append(messages[0]["MessageId"])
                self.skip(item)
                continue
            if self.labeled(item):  # a second message for a labeled version (a re-driven run sent it)
                self._delete(item)
                continue
            served += 1
            yield item

    def labeled(self, item: ReviewItem) -> bool:
        """Whether someone already stored a label for the item's version."""
        try:
            self.s3.head_object(Bucket=item.obj.bucket, Key=label_key(item.obj))
        except self.s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING_CODES:
                return False
            raise
        return True

    def image(self, item: ReviewItem) -> bytes | None:
        """The reviewed version's bytes; None when that version is gone (deleted, or overwritten: the
        new bytes have a run and an outcome of their own, and must not be labeled as this one)."""
        obj = item.obj
        try:
            response = self.s3.get_object(
                Bucket=obj.bucket, Key=obj.key, **s3_version_selector(obj.etag, obj.version_id)
            )
        except self.s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in GONE_CODES:
                return None
            raise
        body: bytes = response["Body"].read()
        return body

    def discard(self, item: ReviewItem) -> None:
        """Take off the queue an item whose version is gone: it can never be labeled (a label goes with
        the very bytes reviewed); its `review/` record stays the upload's outcome."""
        self._delete(item)

    def skip(self, item: ReviewItem) -> None:
        """Leave the item for later: it stays hidden from this session and returns when `release()` runs."""
        self._held[item.receipt_handle] = item.received_at  # hidden since it was received

    def keep_held(self) -> None:
        """Hide the skipped items again before their visibility timeout runs out (a long session)."""
        now = time.monotonic()
        for handle, hidden_at in list(self._held.items()):
            if now - hidden_at > self.visibility_s / 2:
                if self._change_visibility(handle, self.visibility_s):
                    self._held[handle] = now
                else:
                    del self._held[handle]  # back on the queue already, or gone

    def release(self) -> None:
        """Put every item skipped in this session back on the queue, visible at once."""
        while self._held:
            handle, _ = self._held.popitem()
            self._change_visibility(handle, 0)

    def _change_visibility(self, handle: str, seconds: int) -> bool:
        """False when SQS no longer holds the message for this handle (it timed out, or was deleted)."""
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=seconds
            )
        except self.sqs.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") not in STALE_HANDLE_CODES:
                raise
            return False
        return True

    def store(self, item: ReviewItem, label: str) -> bool:
        """Store the labeled image and the label, then delete the message; False if already labeled or
        the reviewed version is gone (a label must go with the very bytes that were reviewed)."""
        if label not in LABEL_CLASSES:
            raise ValueError(f"{label!r} is not one of {LABEL_CLASSES}")
        obj = item.obj
        document = {
            "bucket": obj.bucket,
            "key": obj.key,
            "etag": obj.etag,
            "label": label,
            "reviewer": self.reviewer,
            "labeled_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "model_label": item.record.get("label"),
            "confidence": item.record.get("confidence"),
            "probabilities": item.record.get("probabilities"),
            "model_version": item.record.get("model_version"),
            "image_key": labeled_key(obj, label),
        }
        # read by version (If-Match) and written below: a copy could race an overwrite
        data = self.image(item)
        if data is None:
            self.discard(item)
            return False
        # the image first: a label document never names a copy that is not there (a failed write
        # leaves the message queued, and the next session writes both)
        copy = labeled_key(obj, label)
        self.s3.put_object(Bucket=obj.bucket, Key=copy, Body=data)
        try:  # the label document is the commit point: the first reviewer to write it wins
            self.s3.put_object(
                Bucket=obj.bucket,
                Key=label_key(obj),
                Body=json.dumps(document).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except self.s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {"PreconditionFailed", "412"}:
                raise
            self._keep_the_first_label(obj, copy, data)
            self._delete(item)
            return False
        self._delete(item)
        return True

    def _keep_the_first_label(self, obj: ObjectRef, ours: str, data: bytes) -> None:
        """Another reviewer labeled this version first: theirs stands. Drop our copy if it is not
        theirs, and give theirs its image if an earlier failed write left it without one."""
        first = json.loads(self.s3.get_object(Bucket=obj.bucket, Key=label_key(obj))["Body"].read())
        theirs = str(first.get("image_key") or "")
        if theirs and theirs != ours:
            self.s3.delete_object(Bucket=obj.bucket, Key=ours)
            try:
                self.s3.head_object(Bucket=obj.bucket, Key=theirs)
            except self.s3.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") not in MISSING_CODES:
                    raise
                self.s3.put_object(Bucket=obj.bucket, Key=theirs, Body=data)

    def _delete(self, item: ReviewItem) -> None:
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=item.receipt_handle)
        except self.sqs.exceptions.ClientError as error:
            # held past its visibility timeout and received by another session: that one finds the
            # label stored and deletes the message itself
            if error.response.get("Error", {}).get("Code") not in STALE_HANDLE_CODES:
                raise


def review_queue(
    reviewer: Reviewer,
    ask: Callable[[ReviewItem, Path | None], Answer],
    thumbnails: Path,
    *,
    limit: int | None = None,
) -> ReviewTally:
    """Ask about each queued item until the queue is empty, `limit` items, or the reviewer quits."""
    tally = ReviewTally()
    thumbnails.mkdir(parents=True, exist_ok=True)
    try:
        _review(reviewer, ask, thumbnails, limit, tally)
    finally:
        reviewer.release()
    return tally


def _review(
    reviewer: Reviewer,
    ask: Callable[[ReviewItem, Path | None], Answer],
    thumbnails: Path,
    limit: int | None,
    tally: ReviewTally,
) -> None:
    from PIL import Image

    from scones.preprocessing import ImageRejected, preview_png

    for item in reviewer.items(limit):
        data = reviewer.image(item)
        if data is None:
            tally.gone.append(item.obj.key)
            reviewer.discard(item)  # skipped, it would come back every session for ever
            continue
        path = (thumbnails / safe_file_name(item.obj.key, item.obj.etag)).with_suffix(".png")
        thumbnail: Path | None = path
        try:  # anyone's bytes: decoded under the model input's guards (bombs, size)
            with Image.open(io.BytesIO(preview_png(data, 128))) as image:
                image.resize((128, 128), Image.Resampling.NEAREST).save(path)
        except (ImageRejected, OSError):
            thumbnail = None
        answer = ask(item, thumbnail)
        if answer == "quit":
            reviewer.skip(item)
            break
        if answer == "skip":
            reviewer.skip(item)
            tally.skipped.append(item.obj.key)
        elif reviewer.store(item, answer):
            tally.labeled[item.obj.key] = answer
        else:
            tally.already_labeled.append(item.obj.key)


def stored_labels(s3: Any, bucket: str) -> Iterator[dict[str, Any]]:
    """Every label document reviewers stored under `labels/`."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=LABELS_PREFIX):
        for item in page.get("Contents", []):
            label: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            yield label


def export_labels(s3: Any, bucket: str, out: Path, classes: tuple[str, ...] = LABELS) -> dict[str, int]:
    """Write `out/<class>/<image>` for every labeled image of the given classes; counts per class,
    plus `missing` (said on stderr, never a crash) for labels whose image copy is gone."""
    counts = dict.fromkeys(classes, 0)
    missing: list[str] = []
    out.mkdir(parents=True, exist_ok=True)  # there even when empty: what the counts say was written to
    for label in stored_labels(s3, bucket):
        if label["label"] not in classes:
            continue
        try:
            data = s3.get_object(Bucket=bucket, Key=label["image_key"])["Body"].read()
        except s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") not in MISSING_CODES:
                raise
            missing.append(label["image_key"])
            continue
        folder = out / label["label"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / safe_file_name(label["key"], label["etag"])).write_bytes(data)
        counts[label["label"]] += 1
    if missing:
        print(
            f"{len(missing)} labels have no image copy (not exported): {', '.join(missing[:5])}",
            file=sys.stderr,
        )
        counts["missing"] = len(missing)
    return counts
