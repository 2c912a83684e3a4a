"""S3 reads return whole versions: a GetObject racing an overwrite, a delete, or the first ETag of
the version it reads still gets every byte of the version it found.

moto 5.2.5 has two gaps here:
- it closes an object's buffer the moment a PutObject replaces it or a DeleteObject removes it
  (`_VersionedKeyStore.setlist` / `.pop` call `FakeKey.dispose()`), so a GetObject on another
  thread that had already found that version fails with "I/O operation on closed file" (a 500);
- `FakeKey.etag` reads the shared buffer without the key's lock the first time it is asked for, so
  a read of the value at that moment can come back short (and the ETag wrong, for good).
`install()` closes replaced versions only after a grace period (a read holds a version for
milliseconds) and computes the ETag under the key's lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"
GRACE_S = 30.0  # how long a replaced version stays readable

_patches = PatchSet("s3_read_consistency")


class RetiredVersions:
    """Replaced versions, closed once their grace period is over (checked at each retirement)."""

    def __init__(self, grace_s: float = GRACE_S) -> None:
        self.grace_s = grace_s
        self._queue: deque[tuple[float, Any]] = deque()  # (when replaced, version), oldest first
        self._lock = threading.Lock()

    def retire(self, version: Any) -> None:
        if not hasattr(version, "dispose"):
            return
        now = time.monotonic()
        with self._lock:
            self._queue.append((now, version))
            while self._queue and self._queue[0][0] + self.grace_s <= now:
                self._queue.popleft()[1].dispose()

    def close_all(self) -> None:
        with self._lock:
            while self._queue:
                self._queue.popleft()[1].dispose()


retired = RetiredVersions()


def install(grace_s: float = GRACE_S) -> None:
    from moto.s3.models import FakeKey
    from moto.s3.utils import _VersionedKeyStore

    uninstall()
    retired.grace_s = grace_s

    def setlist(self: Any, key: Any, list_: Any) -> Any:
        if isinstance(list_, tuple):
            list_ = list(list_)
        elif not isinstance(list_, list):
            list_ = [list_]
        for existing in self.getlist(key, []):
            if existing not in list_:
                retired.retire(existing)
        dict.__setitem__(self, key, list_)  # moto's store is a dict of version lists

    def pop(self: Any, key: str) -> None:
        for version in self.getlist(key, []):
            retired.retire(version)
        dict.pop(self, key)

    compute_etag = vars(FakeKey)["etag"].fget

    def etag(self: Any) -> str:
        with self.lock:  # the lock `FakeKey.value` reads under
            return compute_etag(self)  # type: ignore[no-any-return]

    _patches.replace(_VersionedKeyStore, "setlist", setlist)
    _patches.replace(_VersionedKeyStore, "pop", pop)
    _patches.replace(FakeKey, "etag", property(etag))


def uninstall() -> None:
    _patches.restore()
    retired.close_all()


def is_installed() -> bool:
    return _patches.active
