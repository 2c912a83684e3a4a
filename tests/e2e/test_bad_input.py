"""Every kind of upload people send, through the local stack: valid images are classified, the rest
end in `failed/` with a clear reason code, and nothing blocks the uploads after them."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from scones.objects import S3_KEY_LIMIT, ObjectRef, execution_arn
from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes
from service.sample_uploads import INVALID, VALID, encode, scene
from tests.e2e.settle import dead_letters


def run_uploads(stack: LocalStack, uploads: dict[str, bytes]) -> dict[str, dict[str, object]]:
    s3 = stack.client("s3")
    batch = uuid.uuid4().hex[:8]
    keys = {name: f"inbox/bad-input-{batch}/{name}" for name in uploads}
    for name, data in uploads.items():
        s3.put_object(Bucket=stack.resources.bucket, Key=keys[name], Body=data)
    index = wait_for_outcomes(s3, stack.resources.bucket, keys.values(), timeout_s=120, poll_s=0.1)
    assert not index.duplicates
    return {name: index.records[key] for name, key in keys.items() if key in index.records}


def test_every_kind_of_upload_gets_its_one_outcome(stack: LocalStack) -> None:
    uploads = {name: make() for name, make in VALID.items()}
    uploads |= {name: make() for name, (make, _) in INVALID.items()}
    records = run_uploads(stack, uploads)
    assert set(records) == set(uploads), f"missing outcomes: {set(uploads) - set(records)}"
    for name in VALID:
        assert records[name]["outcome"] in ("accepted", "review"), (name, records[name])
    for name, (_, reason) in INVALID.items():
        assert (records[name]["outcome"], records[name]["reason"]) == ("failed", reason), (
            name,
            records[name],
        )
    assert records["exif-rotated.jpg"]["source"] == {
        "format": "JPEG",
        "mode": "RGB",
        "width": 64,
        "height": 48,
    }


def test_an_upload_whose_key_is_at_s3s_limit_gets_its_outcome(stack: LocalStack) -> None:
    s3 = stack.client("s3")
    folder = f"inbox/long-key-{uuid.uuid4().hex[:8]}/"
    key = folder + "k" * (S3_KEY_LIMIT - len(folder) - len(".png")) + ".png"
    s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=encode(scene(), "PNG"))
    index = wait_for_outcomes(s3, stack.resources.bucket, [key], timeout_s=60, poll_s=0.1)
    assert index.records[key]["outcome"] in ("accepted", "review") and index.records[key]["key"] == key
    (record_key,) = index.record_keys[key]
    _, _, path = record_key.partition("/")
    assert len(record_key.encode()) <= S3_KEY_LIMIT and path.startswith(folder.removeprefix("inbox/"))


def test_an_object_over_the_size_limit_fails_without_being_decoded(stack: LocalStack) -> None:
    lam = stack.client("lambda")
    variables = lam.get_function_configuration(FunctionName="scones-serialize")["Environment"]["Variables"]
    try:
        lam.update_function_configuration(
            FunctionName="scones-serialize",
            Environment={"Variables": variables | {"MAX_IMAGE_BYTES": "1000"}},
        )
        records = run_uploads(stack, {"large.png": encode(scene(size=(200, 200)), "PNG")})
    finally:
        lam.update_function_configuration(
            FunctionName="scones-serialize", Environment={"Variables": variables}
        )
    assert (records["large.png"]["outcome"], records["large.png"]["reason"]) == ("failed", "too_large")


def test_an_object_deleted_before_it_is_read_fails_as_object_missing(stack: LocalStack) -> None:
    obj = ObjectRef(stack.resources.bucket, f"inbox/gone-{uuid.uuid4().hex[:8]}.png", "0123abcd")
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.resources.state_machine_arn,
        name=obj.execution_name(),
        input=json.dumps({"object": obj.as_dict(), "received_at": "2026-11-24T00:00:00.000Z"}),
    )
    index = wait_for_outcomes(stack.client("s3"), stack.resources.bucket, [obj.key], timeout_s=60, poll_s=0.1)
    assert (index.records[obj.key]["outcome"], index.records[obj.key]["reason"]) == (
        "failed",
        "object_missing",
    )


@pytest.mark.parametrize("key", ["outside/x.png", "inbox/folder/"])
def test_objects_that_are_not_uploads_get_no_run_and_no_outcome(stack: LocalStack, key: str) -> None:
    import service.moto_adapters as adapters
    from service.outcome_watch import list_record_keys, object_key_of

    s3 = stack.client("s3")
    body = b"" if key.endswith("/") else encode(scene(), "PNG")
    etag = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=body)["ETag"].strip('"')
    installed = adapters.current()
    assert installed is not None and installed.delivery.wait_idle(120)
    sfn = stack.client("stepfunctions")
    name = ObjectRef(stack.resources.bucket, key, etag).execution_name()
    with pytest.raises(sfn.exceptions.ExecutionDoesNotExist):
        sfn.describe_execution(executionArn=execution_arn(stack.resources.state_machine_arn, name))
    assert key not in {object_key_of(record) for record in list_record_keys(s3, stack.resources.bucket)}


def test_a_failure_never_lands_beside_an_outcome_the_upload_already_has(stack: LocalStack) -> None:
    """The failure path meets a result record of the same object version (a record invocation that
    wrote it and was still reported failed): the result stands, no failure record, no DLQ letter."""
    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    obj = ObjectRef(stack.resources.bucket, f"inbox/kept-{uuid.uuid4().hex[:8]}.png", "4567cdef")
    result = {"outcome": "accepted", "bucket": obj.bucket, "key": obj.key, "etag": obj.etag}
    s3.put_object(Bucket=obj.bucket, Key=obj.outcome_key("results"), Body=json.dumps(result).encode())
    execution = sfn.start_execution(
        stateMachineArn=stack.resources.state_machine_arn,
        name=obj.execution_name(),
        input=json.dumps({"object": obj.as_dict(), "received_at": "2026-11-24T00:00:00.000Z"}),
    )  # the object itself is gone: serialize fails with object_missing
    deadline = time.monotonic() + 60
    while (status := sfn.describe_execution(executionArn=execution["executionArn"])["status"]) == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status == "SUCCEEDED"
    assert "Contents" not in s3.list_objects_v2(Bucket=obj.bucket, Prefix=obj.outcome_key("failed"))
    assert all(obj.key not in json.dumps(letter) for letter in dead_letters(stack)), "every letter read"


def test_a_run_whose_version_was_overwritten_before_it_was_read_fails_as_superseded(
    stack: LocalStack,
) -> None:
    """The key holds a newer version when serialize reads: that run must not classify the newer
    bytes as its own version's (the newer version gets its own run); it records `superseded`."""
    s3, events = stack.client("s3"), stack.client("events")
    key = f"inbox/overwritten-{uuid.uuid4().hex[:8]}.png"
    events.disable_rule(Name=stack.resources.rule_name)  # the runs are started by hand below
    try:
        old = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=encode(scene(), "PNG"))
        s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=encode(scene(size=(20, 20)), "PNG"))
    finally:
        events.enable_rule(Name=stack.resources.rule_name)
    obj = ObjectRef(stack.resources.bucket, key, old["ETag"].strip('"'))
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.resources.state_machine_arn,
        name=obj.execution_name(),
        input=json.dumps({"object": obj.as_dict(), "received_at": "2026-11-24T00:00:00.000Z"}),
    )
    index = wait_for_outcomes(
        s3, stack.resources.bucket, [key], timeout_s=60, poll_s=0.1, versions={key: obj.etag}
    )
    record = index.records[key]
    assert (record["outcome"], record["reason"], record["etag"]) == ("failed", "superseded", obj.etag)
