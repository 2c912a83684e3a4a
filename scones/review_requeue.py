"""Review items outlive SQS: an unlabelled review record goes back on the queue before its message expires.

SQS keeps a message 14 days at most (the review queue keeps them that long), and an item reviewers
skip again and again escapes the backlog alarm (SQS's age of the oldest message passes over messages
received three times or more). The `review/` record stays: the reconciler sends each record whose
upload version is still the key's, has no label, and was last queued `requeue_after_s` ago (12 days
by default) to the queue again. When it was last queued is the record's own write, else a marker
under `requeue/` written with each resend (the record itself is never rewritten: reports
order records by their write time). A reviewer drops a message of a version labelled already, so a
copy that meets the original costs a glance at most. Versions deleted or overwritten since are left
out, as the reviewer drops them too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

from scones.defaults import REVIEW_REQUEUE_AFTER_S
from scones.objects import INBOX_PREFIX, LABELS_PREFIX, ObjectRef, label_key, record_path
from scones.outcomes import OUTCOME_FOLDER
from scones.reconcile import BucketLister, StoredObject
from scones.steps import MAX_RECORD_BYTES, ObjectStore

REVIEW_PREFIX: Final = f"{OUTCOME_FOLDER['review']}/"
# `<path>/<version>.json`: when a review item was last queued; no longer than `results/`, for
# which record keys leave room (RECORD_PATH_LIMIT)
REQUEUED_PREFIX: Final = "requeue/"


class MessageSender(Protocol):
    """The review queue: sends one message."""

    def send(self, body: str) -> None: ...


@dataclass
class RequeueReport:
    requeued: list[str] = field(default_factory=list)  # upload keys sent again
    failed: dict[str, str] = field(default_factory=dict)  # review record key → why (tried next hour)


def requeue_unlabelled(
    bucket: str,
    lister: BucketLister,
    store: ObjectStore,
    queue: MessageSender,
    *,
    now: datetime,
    requeue_after_s: float = REVIEW_REQUEUE_AFTER_S,
    inbox: list[StoredObject] | None = None,
) -> RequeueReport:
    """Send the review records that await a label and were last queued `requeue_after_s` ago or more
    to the queue again. Only the records due are read. `inbox`: as `reconcile`'s."""
    report = RequeueReport()
    if inbox is None:
        inbox = list(lister.list_current_versions(bucket, INBOX_PREFIX))
    current = {record_path(item.key): item for item in inbox}
    labelled = {item.key for item in lister.list(bucket, LABELS_PREFIX)}
    queued_at = {
        item.key.removeprefix(REQUEUED_PREFIX): item.last_modified
        for item in lister.list(bucket, REQUEUED_PREFIX)
    }
    for item in lister.list(bucket, REVIEW_PREFIX):
        name = item.key.removeprefix(REVIEW_PREFIX)  # `<path>/<version>.json`
        if (now - queued_at.get(name, item.last_modified)).total_seconds() < requeue_after_s:
            continue
        upload = _still_reviewable(current.get(name.rpartition("/")[0]), item.key, labelled, bucket)
        if upload is None:
            continue
        try:
            _, body = store.read(bucket, item.key, MAX_RECORD_BYTES)
            queue.send((body or b"").decode())
            store.write_json(bucket, REQUEUED_PREFIX + name, json.dumps({"queued_at": now.isoformat()}))
        except Exception as error:  # one item's trouble must not stop the others
            report.failed[item.key] = f"{type(error).__name__}: {error}"
            continue
        report.requeued.append(upload.key)
    return report


def _still_reviewable(
    upload: StoredObject | None, record_key: str, labelled: set[str], bucket: str
) -> ObjectRef | None:
    """The upload of a review record, if the key still holds that version and it has no label."""
    if upload is None:
        return None  # deleted
    obj = ObjectRef(bucket, upload.key, upload.etag.strip('"'), version_id=upload.version_id)
    if obj.outcome_key("review") != record_key:
        return None  # overwritten: another version
    return None if label_key(obj) in labelled else obj
