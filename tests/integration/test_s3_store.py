"""The S3 adapter's reconciler port against moto's S3 over loopback: what a listing does not show."""

from __future__ import annotations

import hashlib

from handlers.aws import S3ObjectStore
from service.moto_adapters.server import start_moto_server


def test_listing_current_versions_gives_their_ids_in_a_versioned_bucket_and_none_otherwise() -> None:
    with start_moto_server() as moto:
        s3 = moto.client("s3")
        for bucket in ("versioned", "plain"):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket="versioned", Key="inbox/a.png", Body=b"first")
        current = s3.put_object(Bucket="versioned", Key="inbox/a.png", Body=b"second")["VersionId"]
        s3.put_object(Bucket="plain", Key="inbox/a.png", Body=b"only")
        s3.put_object(Bucket="versioned", Key="inbox/b.png", Body=b"b")
        s3.delete_object(Bucket="versioned", Key="inbox/b.png")  # a delete marker is current now
        store = S3ObjectStore(s3)
        versioned = list(store.list_current_versions("versioned", "inbox/"))
        assert [(item.key, item.version_id) for item in versioned] == [("inbox/a.png", current)]
        assert versioned[0].etag.strip('"') == hashlib.md5(b"second").hexdigest()
        plain = list(store.list_current_versions("plain", "inbox/"))
        assert [(item.key, item.version_id, item.size) for item in plain] == [("inbox/a.png", None, 4)]
