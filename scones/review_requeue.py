"""Review items outlive SQS: an unlabelled review record goes back on the queue before its message expires.

SQS keeps a message 14 days at most (the review queue keeps them that long), and an item reviewers
skip again and again escapes the backlog alarm (SQS's age of the oldest message passes over messages
received three times or more). The `review/` record stays: the reconciler sends each record that has
no label and was last queued `requeue_after_s` ago (12 days by default) to the queue again, then
writes the record again unchanged, so that its LastModified says when. A reviewer drops a message of
a version labelled already, so a copy that meets the original costs a glance at most.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Final, Protocol

from scones.defaults import REVIEW_REQUEUE_AFTER_S
from scones.objects import LABELS_PREFIX, ObjectRef, label_key
from scones.reconcile import BucketLister
from scones.steps import MAX_RECORD_BYTES, ObjectStore

REVIEW_PREFIX: Final = "review/"


class MessageSender(Protocol):
    """The review queue: sends one message."""

    def send(self, body: str) -> None: ...


def requeue_unlabelled(
    bucket: str,
    lister: BucketLister,
    store: ObjectStore,
    queue: MessageSender,
    *,
    now: datetime,
    requeue_after_s: float = REVIEW_REQUEUE_AFTER_S,
) -> list[str]:
    """Send the review records without a label, last queued `requeue_after_s` ago or more, to the
    queue again; the upload keys sent. A record that is no outcome record is left alone."""
    labelled = {item.key for item in lister.list(bucket, LABELS_PREFIX)}
    requeued = []
    for item in lister.list(bucket, REVIEW_PREFIX):
        if (now - item.last_modified).total_seconds() < requeue_after_s:
            continue
        _, body = store.read(bucket, item.key, MAX_RECORD_BYTES)
        try:
            record = json.loads(body or b"")
            obj = ObjectRef(record["bucket"], record["key"], record["etag"])
        except (ValueError, KeyError, TypeError):
            continue
        if label_key(obj) in labelled:
            continue
        text = body.decode() if body else ""
        queue.send(text)
        store.write_json(bucket, item.key, text)  # LastModified: queued again now
        requeued.append(obj.key)
    return requeued
