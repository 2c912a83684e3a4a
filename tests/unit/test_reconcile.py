"""The reconciler finds the inbox objects whose current version has no outcome and starts just those."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from scones.objects import ObjectRef
from scones.reconcile import StoredObject, reconcile
from tests.unit.fakes import MemoryStarter

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@dataclass
class MemoryBucket:
    objects: list[StoredObject] = field(default_factory=list)

    def add(self, key: str, etag: str = "e1", age_s: float = 3600, size: int = 10) -> None:
        self.objects.append(StoredObject(key, f'"{etag}"', size, NOW - timedelta(seconds=age_s)))

    versions: dict[str, str] = field(default_factory=dict)  # key → current version id (versioned)

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        return (item for item in self.objects if item.key.startswith(prefix))

    def list_current_versions(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        return (replace(item, version_id=self.versions.get(item.key)) for item in self.list(bucket, prefix))


def test_in_a_versioned_bucket_records_and_runs_go_by_the_version_id() -> None:
    """An event from a versioned bucket names the version: its record is `<key>/<version id>.json` and
    its run is named by the version id; the reconciler must not take it for unrecorded and run it again."""
    bucket = MemoryBucket(versions={"inbox/done.png": "v1", "inbox/lost.png": "v7"})
    bucket.add("inbox/done.png")
    bucket.add("results/done.png/v1.json")
    bucket.add("inbox/lost.png")
    starter = MemoryStarter()
    report = reconcile("data", bucket, starter, now=NOW)
    assert report.recorded == 1
    as_the_event_names_it = ObjectRef("data", "inbox/lost.png", "e1", version_id="v7")
    assert report.started == {"inbox/lost.png": as_the_event_names_it.execution_name()}


def test_only_versions_without_a_record_are_started() -> None:
    bucket = MemoryBucket()
    bucket.add("inbox/done.png")
    bucket.add("results/done.png/e1.json")
    bucket.add("inbox/reviewed.png")
    bucket.add("review/reviewed.png/e1.json")
    bucket.add("inbox/lost.png")
    bucket.add("inbox/changed.png", etag="e2")
    bucket.add("failed/changed.png/e1.json")  # the record of the old version
    bucket.add("inbox/folder/", size=0)  # the console's "Create folder"
    bucket.add("inbox/named-like-a-folder/")  # with content: an upload
    starter = MemoryStarter()
    report = reconcile("data", bucket, starter, now=NOW)
    assert set(report.started) == {"inbox/lost.png", "inbox/changed.png", "inbox/named-like-a-folder/"}
    assert report.recorded == 2
    changed = ObjectRef("data", "inbox/changed.png", "e2")
    assert report.started[changed.key] == changed.execution_name()


def test_young_uploads_are_left_for_later_and_running_ones_are_not_started_twice() -> None:
    bucket = MemoryBucket()
    bucket.add("inbox/fresh.png", age_s=10)
    bucket.add("inbox/running.png")
    starter = MemoryStarter()
    starter.start(ObjectRef("data", "inbox/running.png", "e1").execution_name(), "{}")
    report = reconcile("data", bucket, starter, now=NOW, min_age_s=900)
    assert report.started == {} and report.too_young == 1 and report.already_running == ["inbox/running.png"]


def test_a_run_that_ended_without_a_record_is_replayed_under_the_next_free_name() -> None:
    """Step Functions keeps a closed run's name for 90 days: the first name cannot run again."""
    bucket = MemoryBucket()
    bucket.add("inbox/cut-off.png")
    obj = ObjectRef("data", "inbox/cut-off.png", "e1")
    starter = MemoryStarter()
    starter.start(obj.execution_name(), "{}")
    starter.finish(obj.execution_name(), "FAILED")  # e.g. its record step was denied
    first = reconcile("data", bucket, starter, now=NOW)
    assert first.started == {obj.key: obj.execution_name(replay=1)}
    again = reconcile("data", bucket, starter, now=NOW)  # the replay still runs: nothing new
    assert again.started == {} and again.already_running == [obj.key]
    starter.finish(obj.execution_name(replay=1), "TIMED_OUT")
    third = reconcile("data", bucket, starter, now=NOW)
    assert third.started == {obj.key: obj.execution_name(replay=2)}


def test_a_run_that_succeeded_after_the_listing_is_not_run_again() -> None:
    """The records are listed first and the runs looked up later: a run that ended meanwhile has
    recorded its outcome (every SUCCEEDED path does), though the listing missed it."""
    bucket = MemoryBucket()
    bucket.add("inbox/late.png")
    obj = ObjectRef("data", "inbox/late.png", "e1")
    starter = MemoryStarter()
    starter.start(obj.execution_name(), "{}")
    starter.finish(obj.execution_name(), "SUCCEEDED")
    report = reconcile("data", bucket, starter, now=NOW)
    assert report.started == {} and report.recorded == 1


def test_an_upload_whose_every_replay_name_is_used_is_reported_not_retried() -> None:
    from scones.reconcile import redrive

    obj = ObjectRef("data", "inbox/hopeless.png", "e1")
    starter = MemoryStarter()
    for attempt in range(3):
        starter.start(obj.execution_name(replay=attempt), "{}")
        starter.finish(obj.execution_name(replay=attempt), "FAILED")
    assert redrive(obj, starter, max_replays=2) == (obj.execution_name(replay=2), "exhausted")
    assert redrive(obj, starter, max_replays=3) == (obj.execution_name(replay=3), "started")
