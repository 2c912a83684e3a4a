"""S3 object writes are atomic: a conditional write checks and writes as one, and concurrent writes
to one key each land whole (in a versioned bucket, each keeps its version).

moto 5.2.5 has no lock on its object store's writes:
- `S3Response.put_object` (and DeleteObject, CompleteMultipartUpload) reads the current object,
  compares its ETag with the request's If-Match / If-None-Match, then writes: two requests that read
  the same version can both pass, and the second silently replaces the first where S3 answers 412
  (PreconditionFailed). The model registry (`scones.registry.BucketRegistry`) relies on that refusal
  to lose no concurrent status change;
- `S3Backend.put_object` reads a key's version list and writes it back: in a versioned bucket, two
  concurrent puts can each return a version id while one of the versions is lost.
`install()` runs every object write request (PUT, DELETE, POST on a key; DeleteObjects) under one
lock. Reads are untouched.
"""

from __future__ import annotations

import threading

from service.moto_adapters._patching import PatchSet, one_at_a_time

MOTO_VERSION = "5.2.5"

# the S3Response methods that dispatch a write (a key's PUT, DELETE and POST; a bucket's POST, which
# is DeleteObjects or a browser upload)
WRITE_DISPATCHERS = (
    "_key_response_put",
    "_key_response_delete",
    "_key_response_post",
    "_bucket_response_post",
)

_patches = PatchSet("s3_atomic_writes")
_writes = threading.RLock()  # reentrant: safe should a write path ever write again on its thread


def install() -> None:
    from moto.s3.responses import S3Response

    uninstall()
    for name in WRITE_DISPATCHERS:
        _patches.replace(S3Response, name, one_at_a_time(getattr(S3Response, name), _writes))


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
