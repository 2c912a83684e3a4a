"""S3's conditional writes are atomic: a PutObject with If-Match or If-None-Match checks and writes as one.

moto 5.2.5's `S3Response.put_object` reads the current object, compares its ETag with the request's
condition, then writes: two requests that read the same version can both pass and the second write
silently replaces the first, where S3 refuses it with 412 (PreconditionFailed). The model registry
(`scones.registry.BucketRegistry`) relies on that refusal to lose no concurrent status change.
`install()` runs every conditional PutObject under one lock, so the check and the write happen
together; unconditional writes are untouched.
"""

from __future__ import annotations

import threading
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("s3_conditional_writes")
_conditional = threading.Lock()


def install() -> None:
    from moto.s3.responses import S3Response

    uninstall()
    put_object = S3Response.put_object

    def atomic_put_object(self: Any) -> Any:
        if self.headers.get("If-Match") or self.headers.get("If-None-Match"):
            with _conditional:
                return put_object(self)
        return put_object(self)

    _patches.replace(S3Response, "put_object", atomic_put_object)


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
