"""Uploaded objects: parsing S3 "Object Created" events, execution names, and outcome record keys."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote_plus

INBOX_PREFIX: Final = "inbox/"
OutcomeKind = Literal["results", "review", "failed"]
OUTCOME_PREFIXES: Final[tuple[OutcomeKind, ...]] = ("results", "review", "failed")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
EXECUTION_NAME_LIMIT: Final = 80
REPLAY_MARK: Final = "-replay-"
S3_KEY_LIMIT: Final = 1024  # bytes of UTF-8
# Room left for `<key below inbox/>` in a record key, with the longest kind (`results/`) and a
# version of up to 64 characters around it: `results/<path>/<version>.json`.
RECORD_PATH_LIMIT: Final = S3_KEY_LIMIT - len("results/") - len("/") - 64 - len(".json")
_LONG_PATH_MARK: Final = "~"


def is_replay_execution(execution_id: str | None) -> bool:
    """Whether an execution ARN (or name) is a replay run (`scones replay`) rather than a first run."""
    name = (execution_id or "").rsplit(":", 1)[-1]
    head, mark, attempt = name.rpartition(REPLAY_MARK)
    return bool(mark and head and attempt.isdigit())


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of the run `name` of a state machine."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def version_id_or_none(value: object) -> str | None:
    """An S3 version id, or None where S3 has none (it says `null` for an unversioned object)."""
    return None if value in (None, "", "null") else str(value)


LABELS_PREFIX: Final = "labels/"


def label_key(obj: ObjectRef) -> str:
    """`labels/<key below inbox/>/<etag>.json`: one label per object version (`scones review`)."""
    return f"{LABELS_PREFIX}{record_path(obj.key)}/{obj.etag}.json"


def record_version(etag: str, version_id: str | None) -> str:
    """The name an object version's outcome record goes by: its version id in a versioned bucket,
    else its ETag."""
    return (version_id or etag).strip('"') or "unknown"


def s3_version_selector(etag: str | None, version_id: str | None) -> dict[str, str]:
    """GetObject/HeadObject parameters for exactly this version: its version id, else If-Match on its ETag."""
    if version_id:
        return {"VersionId": version_id}
    return {"IfMatch": '"' + etag.strip('"') + '"'} if etag else {}


class NotAnUpload(ValueError):
    """An event that must start nothing: another event type, another prefix, or a folder marker."""


@dataclass(frozen=True)
class ObjectRef:
    """One version of one uploaded object: what an outcome is recorded for."""

    bucket: str
    key: str
    etag: str
    size: int | None = None
    version_id: str | None = None
    sequencer: str | None = None

    @property
    def identity(self) -> str:
        """Bucket, key and version: equal for duplicate deliveries, different for a changed object."""
        version = self.version_id or self.etag
        return f"{self.bucket}/{self.key}@{version}"

    def execution_name(self, replay: int = 0) -> str:
        """A Step Functions execution name unique to this object version (≤ 80 chars, [A-Za-z0-9_-]).

        `replay=n` names the object version's n-th replay (`...-replay-n`): a new run of the same upload.
        """
        digest = hashlib.sha256(self.identity.encode()).hexdigest()[:32]
        suffix = f"{REPLAY_MARK}{replay}" if replay else ""
        readable = _NAME_UNSAFE.sub("-", self.key.removeprefix(INBOX_PREFIX)).strip("-")
        room = EXECUTION_NAME_LIMIT - len(digest) - len(suffix) - 1
        return (f"{readable[:room]}-{digest}" if readable else digest) + suffix

    def outcome_key(self, kind: OutcomeKind) -> str:
        """`<kind>/<key below inbox/>/<etag>.json`: one record per object version, never a local path.

        A key too long for that to fit S3's 1024 bytes is shortened (see `record_path`).
        """
        return f"{kind}/{record_path(self.key)}/{record_version(self.etag, self.version_id)}.json"

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "size": self.size,
            "version_id": self.version_id,
            "sequencer": self.sequencer,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectRef:
        return cls(
            bucket=str(data["bucket"]),
            key=str(data["key"]),
            etag=str(data.get("etag") or ""),
            size=data.get("size"),
            version_id=data.get("version_id"),
            sequencer=data.get("sequencer"),
        )


def record_path(key: str) -> str:
    """The part of an outcome record's key that names the upload: its key below `inbox/`.

    An upload key near S3's limit would make a record key past it, and the upload could never get
    an outcome. Such a path keeps its first bytes and ends in `~` and 16 hex digits of the SHA-256
    of the whole path, so it stays unique (a cut inside a folder name leaves it in a shorter folder;
    look records up by `outcome_key`, never by listing a folder); the record carries the full key.
    """
    relative = key.removeprefix(INBOX_PREFIX)
    encoded = relative.encode()
    if len(encoded) <= RECORD_PATH_LIMIT:
        return relative
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    room = RECORD_PATH_LIMIT - len(_LONG_PATH_MARK) - len(digest)
    head = encoded[:room].decode("utf-8", errors="ignore")  # never half a character
    return f"{head}{_LONG_PATH_MARK}{digest}"


def is_folder_marker(key: str, size: int | None) -> bool:
    """What the S3 console's "Create folder" makes: an empty object whose key ends in `/`. One with
    content is an upload like any other, and gets its outcome."""
    return key.endswith("/") and not size


def decode_event_key(raw: str) -> str:
    """S3 notifications carry the key URL-encoded (a space as `+`); this is the key S3 APIs take."""
    return unquote_plus(raw)


def object_from_event(event: dict[str, Any], *, prefix: str = INBOX_PREFIX) -> ObjectRef:
    """The object of an S3 "Object Created" EventBridge event, from AWS or from moto.

    AWS names the field `etag`; moto 5.2 sends `eTag`. Raises NotAnUpload for anything that must
    not start a workflow run.
    """
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        raise NotAnUpload(f"not an S3 Object Created event: {event.get('source')}/{event.get('detail-type')}")
    detail = event.get("detail") or {}
    obj = detail.get("object") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    raw_key = obj.get("key")
    if not bucket or not raw_key:
        raise NotAnUpload("the event names no bucket or key")
    key = decode_event_key(str(raw_key))
    if not key.startswith(prefix):
        raise NotAnUpload(f"{key!r} is outside {prefix}")
    if is_folder_marker(key, obj.get("size")):
        raise NotAnUpload(f"{key!r} is a folder marker")
    version_id = obj.get("version-id")
    return ObjectRef(
        bucket=str(bucket),
        key=key,
        etag=str(obj.get("etag") or obj.get("eTag") or "").strip('"'),
        size=obj.get("size"),
        version_id=version_id_or_none(version_id),
        sequencer=obj.get("sequencer"),
    )
