"""S3's EventBridge notifications as AWS sends them ("Object Created" / "Object Deleted" on the default bus).

moto's `moto.s3.notifications._send_event_bridge_message` builds every event from a fixed template:
the same `id` for every event, `eTag` instead of `etag`, a constant `sequencer` and `request-id`,
`requester` "123456789012", `version-id` "null" on unversioned buckets, `reason` "ObjectCreated";
it sends to every event bus rather than the default one; and moto's internals add events AWS does
not send: CompleteMultipartUpload stores the object through `put_object` (an extra "Object Created"
with reason PutObject) and then tags it, and every PutObject applies its (usually empty) tag set
through `put_object_tagging`, each time an extra "Object Tags Added".

The replacement builds Object Created and Object Deleted events per
https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html :

- a fresh `id` (uuid4) and `request-id`; `requester` is the bucket's account;
- `object`: `key`, `size` and `etag` (created only), `version-id` only on versioned buckets, and a
  `sequencer` of 16 upper-case hex digits that increases monotonically within the process;
- `reason`: PutObject, POST Object, CopyObject or CompleteMultipartUpload; DeleteObject, with
  `deletion-type` "Permanently Deleted" or "Delete Marker Created";
- a multipart upload emits exactly one Object Created (reason CompleteMultipartUpload), and tags
  applied as part of creating an object (PutObject, CopyObject, CompleteMultipartUpload) emit no
  "Object Tags Added": the object-creating calls run inside a thread-local "creating" scope;
- events go to the rules of the account's default bus only.

`time` stays a float (seconds since the epoch): moto's own SQS and CloudWatch Logs targets convert
it with `float(event["time"])`, and `event_delivery` converts it to ISO-8601 for Lambda and Step
Functions targets. Other S3 event types (restore, ACL, tagging by PutObjectTagging, ...) keep
moto's implementation.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote_plus

from service.moto_adapters._patching import PatchSet

if TYPE_CHECKING:
    from moto.s3.models import FakeBucket

MOTO_VERSION = "5.2.5"

CREATED_REASONS: Final = {
    "Put": "PutObject",
    "Post": "POST Object",
    "Copy": "CopyObject",
    "CompleteMultipartUpload": "CompleteMultipartUpload",
}
_DELETED_EVENTS: Final = frozenset({"s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated"})
_SEQUENCER_BITS: Final = 64

_log = logging.getLogger(__name__)
_patches = PatchSet("s3_events")
_sequence = itertools.count(time.time_ns() // 1000)  # microseconds since the epoch
_sequence_lock = threading.Lock()


class _Scope(threading.local):
    creating: int = 0  # depth of object-creating calls on this thread
    multipart: int = 0  # depth of CompleteMultipartUpload calls on this thread


_scope = _Scope()


@contextmanager
def _creating(multipart: bool = False) -> Iterator[None]:
    _scope.creating += 1
    _scope.multipart += int(multipart)
    try:
        yield
    finally:
        _scope.creating -= 1
        _scope.multipart -= int(multipart)


def next_sequencer() -> str:
    """16 upper-case hex digits, increasing with every call in this process."""
    with _sequence_lock:
        value = next(_sequence)
    return f"{value % (1 << _SEQUENCER_BITS):016X}"


def _event_name(event_name: object) -> str:
    # S3NotificationEvent is a str Enum: str() of a member is "S3NotificationEvent.X" on Python 3.11
    value = getattr(event_name, "value", event_name)
    return str(value)


def build_event(account_id: str, bucket: FakeBucket, event_name: str, key: Any) -> dict[str, Any] | None:
    """The EventBridge event AWS sends for `event_name` on `key`, or None when we do not model it."""
    operation = event_name.rsplit(":", maxsplit=1)[-1]
    # S3 URL-encodes the key in its notifications ("red flower.jpg" arrives as "red+flower.jpg").
    obj: dict[str, Any] = {"key": quote_plus(key.name, safe="/")}
    if event_name.startswith("s3:ObjectCreated:"):
        detail_type = "Object Created"
        obj.update(size=key.size, etag=str(key.etag).strip('"'))
        reason: dict[str, str] = {"reason": CREATED_REASONS.get(operation, operation)}
    elif event_name in _DELETED_EVENTS:
        detail_type = "Object Deleted"
        marker = operation == "DeleteMarkerCreated"
        reason = {
            "reason": "DeleteObject",
            "deletion-type": "Delete Marker Created" if marker else "Permanently Deleted",
        }
    else:
        return None
    if bucket.is_versioned and getattr(key, "version_id", None) not in (None, "null"):
        obj["version-id"] = str(key.version_id)
    obj["sequencer"] = next_sequencer()
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": account_id,
        "time": time.time(),  # a float, as moto's SQS / Logs targets expect; see the module docstring
        "region": bucket.region_name,
        "resources": [bucket.arn],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
            **reason,
        },
    }


def _send(original: Callable[..., None]) -> Callable[..., None]:
    def send_event_bridge_message(account_id: str, bucket: FakeBucket, event_name: Any, key: Any) -> None:
        name = _event_name(event_name)
        if _scope.creating and name == "s3:ObjectTagging:Put":
            return  # tags set while creating the object: AWS sends only the Object Created
        if _scope.multipart and name == "s3:ObjectCreated:Put":
            return  # CompleteMultipartUpload's internal put_object; its own event follows
        event = build_event(account_id, bucket, name, key)
        if event is None:
            original(account_id, bucket, event_name, key)
            return
        try:
            from moto.events.models import events_backends

            bus = events_backends[account_id][bucket.region_name].event_buses["default"]
            for rule in list(bus.rules.values()):
                try:
                    rule.send_to_targets(event, transform_input=False)  # type: ignore[arg-type]
                except Exception:
                    _log.exception("S3 event delivery through rule %s failed", rule.name)
        except Exception:  # notifications are asynchronous in AWS: never fail the S3 call
            _log.exception("S3 -> EventBridge notification failed")

    return send_event_bridge_message


def _scoped(original: Callable[..., Any], *, multipart: bool = False) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with _creating(multipart=multipart):
            return original(*args, **kwargs)

    return call


def install() -> None:
    """Replace moto's S3 → EventBridge event builder (and scope the object-creating calls)."""
    uninstall()
    from moto.s3 import notifications
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    original = notifications._send_event_bridge_message
    _patches.replace(notifications, "_send_event_bridge_message", _send(original))
    _patches.replace(S3Response, "put_object", _scoped(S3Response.put_object))
    _patches.replace(S3Response, "copy_object", _scoped(S3Response.copy_object))
    _patches.replace(
        S3Backend,
        "complete_multipart_upload",
        _scoped(S3Backend.complete_multipart_upload, multipart=True),
    )


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
