"""Reconciliation: every object in the inbox must end with an outcome; re-drive the ones that have none.

A run can be lost: EventBridge gives up on an event after its retries, or the embedded stack stops
in the middle of a burst. The reconciler lists the inbox and the outcome records and re-drives each
object version that has no record: it starts the version's first run, or, when that run (and every
replay of it) ended without recording anything, the next replay; a run still going is left alone.
(Step Functions keeps a closed run's name taken for 90 days, so restarting under the first name
would never run again.) On AWS a scheduled function runs it, skipping uploads younger than
`min_age_s` whose runs may still be going; the local stack runs it on start, when nothing can be in
flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from scones.objects import INBOX_PREFIX, OUTCOME_PREFIXES, ObjectRef, is_folder_marker
from scones.steps import MAX_REPLAYS, RunInspector, run_payload, upload_runs


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str
    size: int
    last_modified: datetime
    version_id: str | None = None  # the current version's, in a versioned bucket


class BucketLister(Protocol):
    def list(self, bucket: str, prefix: str) -> Iterable[StoredObject]:
        """The objects under `prefix`."""
        ...

    def list_current_versions(self, bucket: str, prefix: str) -> Iterable[StoredObject]:
        """The objects under `prefix` with their current version ids (None in an unversioned bucket):
        a versioned bucket's events name the version, and its records and runs go by the version id."""
        ...


@dataclass
class ReconcileReport:
    started: dict[str, str] = field(default_factory=dict)  # object key → execution name
    already_running: list[str] = field(default_factory=list)
    exhausted: list[str] = field(default_factory=list)  # every replay name used: left to people
    too_young: int = 0
    recorded: int = 0


def unrecorded(bucket: str, inbox: Iterable[StoredObject], record_keys: Iterable[str]) -> list[ObjectRef]:
    """The inbox objects (folder markers aside) whose current version has no outcome record."""
    recorded = set(record_keys)
    missing = []
    for item in inbox:
        if is_folder_marker(item.key, item.size):
            continue
        obj = ObjectRef(bucket, item.key, item.etag.strip('"'), size=item.size, version_id=item.version_id)
        if not any(obj.outcome_key(kind) in recorded for kind in OUTCOME_PREFIXES):
            missing.append(obj)
    return missing


def redrive(obj: ObjectRef, runs: RunInspector, *, max_replays: int = MAX_REPLAYS) -> tuple[str, str]:
    """(run name, "started" | "running" | "recorded" | "exhausted") for one object version that had no
    outcome in the listing. A run that SUCCEEDED always recorded one: the listing was taken before it
    ended, so nothing is started (a second run would classify and notify twice)."""
    existing = upload_runs(obj, runs.status, max_replays=max_replays)
    for _, name, status in existing:
        if status == "RUNNING":
            return name, "running"
        if status == "SUCCEEDED":
            return name, "recorded"
    attempt = existing[-1][0] + 1 if existing else 0
    if attempt > max_replays:
        return obj.execution_name(replay=max_replays), "exhausted"
    name = obj.execution_name(replay=attempt)
    return name, "started" if runs.start(name, run_payload(obj)) else "running"  # else: started meanwhile


def reconcile(
    bucket: str,
    lister: BucketLister,
    runs: RunInspector,
    *,
    now: datetime,
    min_age_s: float = 0.0,
    inbox: list[StoredObject] | None = None,
) -> ReconcileReport:
    """Start the runs the inbox's unrecorded versions need; `inbox`, when given, is the inbox's
    current versions as listed already (`list_current_versions`), else they are listed here."""
    report = ReconcileReport()
    if inbox is None:
        inbox = list(lister.list_current_versions(bucket, INBOX_PREFIX))
    young = {item.key for item in inbox if (now - item.last_modified).total_seconds() < min_age_s}
    records = [item.key for kind in OUTCOME_PREFIXES for item in lister.list(bucket, f"{kind}/")]
    missing = unrecorded(bucket, inbox, records)
    report.recorded = sum(1 for item in inbox if not is_folder_marker(item.key, item.size)) - len(missing)
    for obj in missing:
        if obj.key in young:
            report.too_young += 1
            continue
        name, outcome = redrive(obj, runs)
        if outcome == "started":
            report.started[obj.key] = name
        elif outcome == "running":
            report.already_running.append(obj.key)
        elif outcome == "recorded":
            report.recorded += 1
        else:
            report.exhausted.append(obj.key)
    return report
