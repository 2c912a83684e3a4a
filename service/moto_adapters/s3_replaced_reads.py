"""S3 reads that race an overwrite or a delete of their object still return the whole version they found.

moto 5.2.5 closes an object's buffer the moment a PutObject replaces it or a DeleteObject removes it
(`_VersionedKeyStore.setlist` / `.pop` call `FakeKey.dispose()`). A GetObject on another thread that
had already found that version then fails with "I/O operation on closed file" (a 500), where S3
returns either the old or the new version. The model registry reads and conditionally rewrites one
record from several threads, and met this. `install()` leaves a replaced version's buffer to be
closed when the last reference to it goes (moto's own `FakeKey.__del__`) instead of at once.
"""

from __future__ import annotations

from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("s3_replaced_reads")


def retire(version: Any) -> None:
    """Mark a replaced version disposed (so its collection does not warn) and leave its buffer open:
    `FakeKey.__del__` closes it when no reader holds the version any more."""
    if hasattr(version, "disposed"):
        version.disposed = True


def install() -> None:
    from moto.s3.utils import _VersionedKeyStore

    uninstall()

    def setlist(self: Any, key: Any, list_: Any) -> Any:
        if isinstance(list_, tuple):
            list_ = list(list_)
        elif not isinstance(list_, list):
            list_ = [list_]
        for existing in self.getlist(key, []):
            if existing not in list_:
                retire(existing)
        dict.__setitem__(self, key, list_)  # moto's store is a dict of version lists

    def pop(self: Any, key: str) -> None:
        for version in self.getlist(key, []):
            retire(version)
        dict.pop(self, key)

    _patches.replace(_VersionedKeyStore, "setlist", setlist)
    _patches.replace(_VersionedKeyStore, "pop", pop)


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
