"""The reconciler finds the inbox objects whose current version has no outcome and starts just those."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scones.objects import ObjectRef
from scones.reconcile import StoredObject, reconcile
from tests.unit.fakes import MemoryStarter

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@dataclass
class MemoryBucket:
    objects: list[StoredObject] = field(default_factory=list)

    def add(self, key: str, etag: str = "e1", age_s: float = 3600) -> None:
        self.objects.append(StoredObject(key, f'"{etag}"', 10, NOW - timedelta(seconds=age_s)))

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        return (item for item in self.objects if item.key.startswith(prefix))


def test_only_versions_without_a_record_are_started() -> None:
    bucket = MemoryBucket()
    bucket.add("inbox/done.png")
    bucket.add("results/done.png/e1.json")
    bucket.add("inbox/reviewed.png")
    bucket.add("review/reviewed.png/e1.json")
    bucket.add("inbox/lost.png")
    bucket.add("inbox/changed.png", etag="e2")
    bucket.add("failed/changed.png/e1.json")  # the record of the old version
    bucket.add("inbox/folder/")
    starter = MemoryStarter()
    report = reconcile("data", bucket, starter, now=NOW)
    assert set(report.started) == {"inbox/lost.png", "inbox/changed.png"}
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
