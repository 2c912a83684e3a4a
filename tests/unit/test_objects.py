"""Parsing S3 "Object Created" events (genuine AWS samples and moto's variant), names and record keys."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from scones.objects import (
    EXECUTION_NAME_LIMIT,
    OUTCOME_PREFIXES,
    RECORD_PATH_LIMIT,
    S3_KEY_LIMIT,
    NotAnUpload,
    ObjectRef,
    object_from_event,
    record_path,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def test_genuine_aws_docs_sample_parses() -> None:
    obj = object_from_event(load("s3_object_created_aws_docs_sample.json"), prefix="")
    assert obj == ObjectRef(
        bucket="amzn-s3-demo-bucket1",
        key="example-key",
        etag="b1946ac92492d2347c6235b4d2611184",
        size=5,
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        sequencer="617f08299329d189",
    )


def test_genuine_powertools_sample_parses() -> None:
    obj = object_from_event(load("s3_object_created_powertools_sample.json"), prefix="")
    assert (obj.bucket, obj.key, obj.etag, obj.size) == (
        "example-bucket",
        "IMG_m7fzo3.jpg",
        "4e68adba0abe2dc8653dc3354e14c01d",
        184662,
    )
    assert obj.version_id is None


def test_genuine_samples_outside_the_inbox_start_nothing() -> None:
    with pytest.raises(NotAnUpload, match="outside inbox/"):
        object_from_event(load("s3_object_created_powertools_sample.json"))


def test_moto_variant_with_camel_case_etag_and_null_version_parses() -> None:
    obj = object_from_event(load("s3_object_created_moto_5_2.json"))
    assert obj.etag == "5d41402abc4b2a76b9719d911017c592"
    assert obj.version_id is None


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("inbox/red+flower.jpg", "inbox/red flower.jpg"),
        ("inbox/c%2B%2B.png", "inbox/c++.png"),
        ("inbox/100%25+real.png", "inbox/100% real.png"),
        ("inbox/v%C3%A9lo.jpg", "inbox/vélo.jpg"),
    ],
)
def test_keys_are_url_decoded_as_s3_encodes_them(encoded: str, key: str) -> None:
    event = load("s3_object_created_aws_docs_sample.json")
    event["detail"]["object"]["key"] = encoded
    assert object_from_event(event).key == key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"detail-type": "Object Deleted"}, "not an S3 Object Created event"),
        ({"source": "aws.ec2"}, "not an S3 Object Created event"),
        ({"detail": {"bucket": {"name": "b"}, "object": {"key": "inbox/sub/"}}}, "folder marker"),
        ({"detail": {"bucket": {"name": "b"}, "object": {"key": "inbox/sub/", "size": 0}}}, "folder marker"),
        ({"detail": {"bucket": {"name": "b"}, "object": {}}}, "no bucket or key"),
    ],
)
def test_events_that_start_nothing(change: dict[str, Any], message: str) -> None:
    event = load("s3_object_created_aws_docs_sample.json") | change
    with pytest.raises(NotAnUpload, match=message):
        object_from_event(event)


def test_a_key_ending_in_a_slash_with_content_is_an_upload() -> None:
    event = load("s3_object_created_aws_docs_sample.json")
    event["detail"]["object"]["key"] = "inbox/photo/"
    obj = object_from_event(event)
    assert obj.key == "inbox/photo/" and obj.outcome_key("failed").startswith("failed/photo/")


def test_execution_name_is_deterministic_valid_and_version_specific() -> None:
    first = ObjectRef("bucket", "inbox/" + "a very long name with spaces & ünïcödé " * 5 + ".jpg", "etag1")
    assert first.execution_name() == ObjectRef(first.bucket, first.key, "etag1").execution_name()
    assert first.execution_name() != ObjectRef(first.bucket, first.key, "etag2").execution_name()
    assert first.execution_name() != ObjectRef("other", first.key, "etag1").execution_name()
    for obj in (first, ObjectRef("b", "inbox/%%%.png", "e")):
        name = obj.execution_name()
        assert len(name) <= EXECUTION_NAME_LIMIT
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name), name


def test_version_id_wins_over_etag_for_identity() -> None:
    a = ObjectRef("b", "inbox/x.png", "same-etag", version_id="v1")
    b = ObjectRef("b", "inbox/x.png", "same-etag", version_id="v2")
    assert a.identity != b.identity
    assert a.outcome_key("results") == "results/x.png/v1.json"


def test_outcome_keys_keep_the_key_below_inbox_and_the_version() -> None:
    obj = ObjectRef("b", "inbox/2026/ride 1.jpg", '"abc"')
    assert obj.outcome_key("results") == "results/2026/ride 1.jpg/abc.json"
    assert obj.outcome_key("failed") == "failed/2026/ride 1.jpg/abc.json"


def test_a_key_at_s3s_limit_still_has_record_keys_within_it() -> None:
    folder = "inbox/" + "ü" * 300 + "/"  # two bytes a character: a cut must not split one
    longest = folder + "x" * (S3_KEY_LIMIT - len(folder.encode()))
    sibling = longest[:-1] + "y"
    assert len(longest.encode()) == S3_KEY_LIMIT
    version = "f" * 64
    for kind in OUTCOME_PREFIXES:
        key = ObjectRef("b", longest, version).outcome_key(kind)
        assert len(key.encode()) <= S3_KEY_LIMIT
        assert key.startswith(f"{kind}/{folder.removeprefix('inbox/')}")
        assert key != ObjectRef("b", sibling, version).outcome_key(kind)  # the digest keeps them apart
    assert record_path(longest).rpartition("~")[2] == hashlib.sha256(longest[6:].encode()).hexdigest()[:16]
    assert record_path("inbox/" + "a" * RECORD_PATH_LIMIT) == "a" * RECORD_PATH_LIMIT  # short enough: as is


def test_review_label_keys_of_a_key_at_the_limit_fit_too() -> None:
    from monitoring.review import labeled_key
    from scones.objects import label_key

    obj = ObjectRef("b", "inbox/" + "z" * (S3_KEY_LIMIT - len("inbox/")), "e" * 40)
    assert len(label_key(obj).encode()) <= S3_KEY_LIMIT
    assert all(len(labeled_key(obj, label).encode()) <= S3_KEY_LIMIT for label in ("bicycle", "motorcycle"))


def test_object_ref_round_trips_through_the_state() -> None:
    obj = ObjectRef("b", "inbox/x.png", "e", size=3, version_id="v", sequencer="s")
    assert ObjectRef.from_dict(json.loads(json.dumps(obj.as_dict()))) == obj
