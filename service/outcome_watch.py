"""Find the outcome records of uploaded objects: what `scones submit --wait`, the demo and tests poll."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scones.objects import INBOX_PREFIX, OUTCOME_PREFIXES, OutcomeKind, record_path


@dataclass
class OutcomeIndex:
    """Outcome records by object key; `duplicates` lists keys that got more than one record."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    record_keys: dict[str, list[str]] = field(default_factory=dict)

    @property
    def duplicates(self) -> dict[str, list[str]]:
        return {key: found for key, found in self.record_keys.items() if len(found) > 1}


def object_key_of(record_key: str) -> str:
    """`results/a/b.png/<etag>.json` → `inbox/a/b.png`."""
    _, _, rest = record_key.partition("/")
    return INBOX_PREFIX + rest.rsplit("/", 1)[0]


def list_record_keys(
    s3: Any, bucket: str, folder: str = "", kinds: Iterable[OutcomeKind] = OUTCOME_PREFIXES
) -> list[str]:
    """Every outcome record key (of the given kinds), or only those of objects under `inbox/<folder>`."""
    return list(list_records(s3, bucket, folder, kinds))


def list_records(
    s3: Any, bucket: str, folder: str = "", kinds: Iterable[OutcomeKind] = OUTCOME_PREFIXES
) -> dict[str, datetime]:
    """`list_record_keys` with each record's LastModified: when it was written."""
    records: dict[str, datetime] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in kinds:
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/{folder}"):
            records |= {item["Key"]: item["LastModified"] for item in page.get("Contents", [])}
    return records


def standing_failures(s3: Any, bucket: str, object_keys: Iterable[str]) -> dict[str, datetime]:
    """The failure records of the objects now (record key → when written): `stale` for a wait on
    uploads about to be put again. An accepted or review record stands, and answers at once."""
    by_record_path = [INBOX_PREFIX + record_path(key) for key in object_keys]
    return list_records(s3, bucket, common_folder(by_record_path), kinds=("failed",))


def common_folder(object_keys: Iterable[str]) -> str:
    """The deepest folder below `inbox/` holding every key (`a/b/` for `inbox/a/b/1.png`...), or ""."""
    folders = [key.removeprefix(INBOX_PREFIX).rpartition("/")[0] for key in object_keys]
    if not folders:
        return ""
    shared = os.path.commonpath(folders) if all(folders) else ""
    return f"{shared}/" if shared else ""


def wait_for_outcomes(
    s3: Any,
    bucket: str,
    object_keys: Iterable[str],
    *,
    timeout_s: float = 300.0,
    poll_s: float = 0.2,
    versions: Mapping[str, str] | None = None,
    stale: Mapping[str, datetime] | None = None,
) -> OutcomeIndex:
    """Poll until every object key has an outcome record (or the timeout); then read the records.

    With `versions` (object key → the uploaded version's `record_version`: its version id in a
    versioned bucket, else its ETag), only that version's record counts for the key: a key uploaded
    again is not answered by its earlier version's outcome. A record in `stale` (record key → when
    it was written, before the upload) counts only once written again: the same bytes put again
    after a failure are retried, and the retry's outcome is the answer. Lists only the
    records below the keys' common folder, and waits longer between polls the longer the wait, up to
    1 s: a watcher in the stack's own process must not slow the stack down.
    """
    wanted = set(object_keys)
    record_names = {key: f"/{version}.json" for key, version in (versions or {}).items()}
    by_record_path = {INBOX_PREFIX + record_path(key): key for key in wanted}  # a long key's is shortened
    folder = common_folder(by_record_path)
    deadline = time.monotonic() + timeout_s
    pause = poll_s
    while True:
        found: dict[str, list[str]] = {}
        for record_key, written in list_records(s3, bucket, folder).items():
            if stale and stale.get(record_key) == written:
                continue
            key = by_record_path.get(object_key_of(record_key), "")
            if key in wanted and (key not in record_names or record_key.endswith(record_names[key])):
                found.setdefault(key, []).append(record_key)
        if wanted <= found.keys() or time.monotonic() > deadline:
            break
        time.sleep(pause)
        pause = min(pause * 1.5, max(poll_s, 1.0))
    index = OutcomeIndex(record_keys={key: found[key] for key in wanted if key in found})
    for key, record_keys in index.record_keys.items():
        body = s3.get_object(Bucket=bucket, Key=record_keys[0])["Body"].read()
        index.records[key] = json.loads(body)
    return index
