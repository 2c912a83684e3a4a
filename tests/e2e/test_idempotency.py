"""Exactly one run and one outcome per object version: duplicate deliveries and retried writes change
nothing; a changed object under the same key is a new version with its own outcome; multipart
uploads and the other events S3 sends (tagging, deletion) start nothing extra."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from scones.objects import ObjectRef, execution_arn
from service.local_stack import LocalStack
from service.outcome_watch import list_record_keys, object_key_of, wait_for_outcomes
from tests.e2e.settle import quiet, run_ended
from training.staging import StagedDataset


def images(staged: StagedDataset, count: int) -> list[bytes]:
    return [path.read_bytes() for path in sorted((staged.split_dir("test") / "bicycle").iterdir())[:count]]


def records_of(stack: LocalStack, key: str) -> list[str]:
    return [
        record
        for record in list_record_keys(stack.client("s3"), stack.resources.bucket)
        if object_key_of(record) == key
    ]


def runs_of(stack: LocalStack, key: str, etag: str) -> list[dict[str, Any]]:
    name = ObjectRef(stack.resources.bucket, key, etag).execution_name()
    sfn = stack.client("stepfunctions")
    try:
        return [sfn.describe_execution(executionArn=execution_arn(stack.resources.state_machine_arn, name))]
    except sfn.exceptions.ExecutionDoesNotExist:
        return []


def test_a_retried_record_invocation_writes_nothing_new(stack: LocalStack, staged: StagedDataset) -> None:
    key = f"inbox/{uuid.uuid4().hex[:8]}/once.png"
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=images(staged, 1)[0])
    record = wait_for_outcomes(s3, stack.resources.bucket, [key], timeout_s=60, poll_s=0.05).records[key]
    # the run's record step completes its idempotency record after writing the outcome: until then a
    # second call is "already in progress", not a retry of a finished one
    assert run_ended(stack, record["execution_id"]) == "SUCCEEDED"
    written = s3.get_object(Bucket=stack.resources.bucket, Key=records_of(stack, key)[0])
    state = {
        "object": ObjectRef(stack.resources.bucket, key, record["etag"], size=record.get("size")).as_dict(),
        "execution_id": record["execution_id"],
        "record": {k: v for k, v in record.items() if k not in {"recorded_at"}},
    }
    answer = stack.client("lambda").invoke(FunctionName="scones-record", Payload=json.dumps(state))
    again = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, again
    assert again["record"]["recorded_at"] == record["recorded_at"], "the first result, not a second write"
    rewritten = s3.get_object(Bucket=stack.resources.bucket, Key=records_of(stack, key)[0])
    assert rewritten["LastModified"] == written["LastModified"] and rewritten["ETag"] == written["ETag"]
    pages = stack.client("dynamodb").get_paginator("scan").paginate(TableName=stack.names.idempotency_table)
    mine = [item for page in pages for item in page["Items"] if key in item.get("data", {}).get("S", "")]
    assert len(mine) == 1 and mine[0]["status"]["S"] == "COMPLETED", "one completed write for this upload"


def test_a_changed_object_under_the_same_key_gets_its_own_outcome(
    stack: LocalStack, staged: StagedDataset
) -> None:
    key = f"inbox/{uuid.uuid4().hex[:8]}/changed.png"
    s3 = stack.client("s3")
    first, second = images(staged, 2)
    etag_1 = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=first)["ETag"].strip('"')
    wait_for_outcomes(s3, stack.resources.bucket, [key], timeout_s=60, poll_s=0.05)
    etag_2 = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=second)["ETag"].strip('"')
    assert etag_1 != etag_2
    deadline = time.monotonic() + 60
    while len(records_of(stack, key)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(r.rsplit("/", 1)[-1] for r in records_of(stack, key)) == sorted(
        [f"{etag_1}.json", f"{etag_2}.json"]
    )
    assert len(runs_of(stack, key, etag_1)) == 1 and len(runs_of(stack, key, etag_2)) == 1


def test_a_multipart_upload_starts_one_run(stack: LocalStack) -> None:
    from service.sample_uploads import encode, scene

    key = f"inbox/{uuid.uuid4().hex[:8]}/multipart.png"
    s3 = stack.client("s3")
    body = encode(scene(size=(3000, 2200)), "PNG")
    part_size = 5 * 1024 * 1024
    assert len(body) > part_size, "at least two parts"
    upload = s3.create_multipart_upload(Bucket=stack.resources.bucket, Key=key)
    parts = []
    for number, start in enumerate(range(0, len(body), part_size), start=1):
        answer = s3.upload_part(
            Bucket=stack.resources.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body[start : start + part_size],
        )
        parts.append({"ETag": answer["ETag"], "PartNumber": number})
    done = s3.complete_multipart_upload(
        Bucket=stack.resources.bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    record = wait_for_outcomes(s3, stack.resources.bucket, [key], timeout_s=120, poll_s=0.1).records[key]
    assert record["outcome"] in {"accepted", "review"}
    quiet(stack)
    assert len(runs_of(stack, key, done["ETag"].strip('"'))) == 1
    assert len(records_of(stack, key)) == 1


def test_tagging_and_deleting_an_upload_start_nothing(stack: LocalStack, staged: StagedDataset) -> None:
    key = f"inbox/{uuid.uuid4().hex[:8]}/tagged.png"
    s3 = stack.client("s3")
    etag = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=images(staged, 1)[0])["ETag"].strip('"')
    wait_for_outcomes(s3, stack.resources.bucket, [key], timeout_s=60, poll_s=0.05)
    s3.put_object_tagging(
        Bucket=stack.resources.bucket, Key=key, Tagging={"TagSet": [{"Key": "reviewed", "Value": "yes"}]}
    )
    s3.delete_object(Bucket=stack.resources.bucket, Key=key)
    quiet(stack)
    pages = (
        stack.client("stepfunctions")
        .get_paginator("list_executions")
        .paginate(stateMachineArn=stack.resources.state_machine_arn)
    )
    mine = [e for page in pages for e in page["executions"] if e["name"].startswith(key.split("/")[1])]
    assert len(mine) == 1 and mine[0]["name"] == ObjectRef(stack.resources.bucket, key, etag).execution_name()
    assert len(records_of(stack, key)) == 1
