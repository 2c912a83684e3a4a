"""Drop an image into the inbox of the local stack and get exactly one outcome: the product's main job."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from scones.objects import ObjectRef, execution_arn
from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes
from tests.e2e.settle import quiet, run_ended
from training.staging import StagedDataset

EVENTS = Path(__file__).resolve().parents[1] / "events"


def upload(stack: LocalStack, data: bytes, name: str) -> str:
    key = f"inbox/{uuid.uuid4().hex[:8]}/{name}"
    stack.client("s3").put_object(Bucket=stack.resources.bucket, Key=key, Body=data)
    return key


def outcome(stack: LocalStack, key: str, timeout_s: float = 60) -> dict[str, Any]:
    index = wait_for_outcomes(
        stack.client("s3"), stack.resources.bucket, [key], timeout_s=timeout_s, poll_s=0.05
    )
    assert key in index.records, f"no outcome for {key} within {timeout_s} s"
    assert not index.duplicates, index.duplicates
    return index.records[key]


def set_threshold(stack: LocalStack, threshold: float) -> None:
    """Reconfigure the filter function as on AWS: the runtime rebuilds it from its new environment."""
    lam = stack.client("lambda")
    name = "scones-filter"
    variables = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": variables | {"CONFIDENCE_THRESHOLD": str(threshold)}}
    )


def test_test_image_is_classified_and_recorded(stack: LocalStack, staged: StagedDataset) -> None:
    data = next((staged.split_dir("test") / "motorcycle").iterdir()).read_bytes()
    key = upload(stack, data, "ride.png")
    record = outcome(stack, key)
    assert record["outcome"] in ("accepted", "review")
    assert record["key"] == key and record["bucket"] == stack.resources.bucket
    assert set(record["probabilities"]) == {"bicycle", "motorcycle"}
    assert abs(sum(record["probabilities"].values()) - 1) < 1e-4
    assert record["label"] == max(record["probabilities"], key=record["probabilities"].__getitem__)
    assert record["threshold"] == 0.85 and record["model_version"]
    assert record["execution_id"].startswith("arn:aws:states:")
    assert {"serialize", "classify"} <= record["timings_ms"].keys()
    assert run_ended(stack, record["execution_id"]) == "SUCCEEDED"


def test_accepted_and_review_routes_follow_the_threshold(stack: LocalStack, staged: StagedDataset) -> None:
    data = next((staged.split_dir("test") / "bicycle").iterdir()).read_bytes()
    sqs = stack.client("sqs")
    try:
        set_threshold(stack, 0.0)
        accepted = outcome(stack, upload(stack, data, "sure.png"))
        set_threshold(stack, 1.0)
        review_key = upload(stack, data, "unsure.png")
        review = outcome(stack, review_key)
    finally:
        set_threshold(stack, 0.85)
    assert accepted["outcome"] == "accepted" and accepted["threshold"] == 0.0
    assert review["outcome"] == "review" and review["threshold"] == 1.0
    obj = ObjectRef(review["bucket"], review["key"], review["etag"])
    records = stack.client("s3").list_objects_v2(Bucket=stack.resources.bucket, Prefix="review/")["Contents"]
    assert obj.outcome_key("review") in {item["Key"] for item in records}
    messages = []
    for _ in range(10):
        received = sqs.receive_message(QueueUrl=stack.resources.review_queue_url, MaxNumberOfMessages=10)
        for message in received.get("Messages", []):  # read and removed: none left hidden for later tests
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(
                QueueUrl=stack.resources.review_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        if any(m["key"] == review_key for m in messages):
            break
    mine = [m for m in messages if m["key"] == review_key]
    assert (
        len(mine) == 1
        and mine[0]["outcome"] == "review"
        and mine[0]["probabilities"] == review["probabilities"]
    )


def test_a_12_megapixel_photo_goes_through(stack: LocalStack) -> None:
    height, width = 3000, 4000
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    cols = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = np.concatenate(
        [
            np.broadcast_to(rows, (height, width, 1)),
            np.broadcast_to(cols, (height, width, 1)),
            np.full((height, width, 1), 90, np.float32),
        ],
        axis=2,
    ).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    assert len(buffer.getvalue()) > 256 * 1024, "bigger than a Step Functions state could carry"
    record = outcome(stack, upload(stack, buffer.getvalue(), "phone photo.jpg"))
    assert record["outcome"] in ("accepted", "review")
    assert record["source"] == {"format": "JPEG", "mode": "RGB", "width": width, "height": height}


def test_garbage_ends_in_failed_with_a_reason_and_a_dlq_message(stack: LocalStack) -> None:
    key = upload(stack, b"<html>not an image</html>", "page.jpg")
    record = outcome(stack, key)
    assert record["outcome"] == "failed" and record["reason"] == "not_an_image"
    assert record["replay"]["key"] == key
    assert run_ended(stack, record["execution_id"]) == "FAILED"  # the letter is sent after the record
    sqs = stack.client("sqs")
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not any(b["key"] == key for b in bodies) and time.monotonic() < deadline:
        received = sqs.receive_message(
            QueueUrl=stack.resources.dead_letter_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        bodies += [json.loads(m["Body"]) for m in received.get("Messages", [])]
    assert [b["reason"] for b in bodies if b["key"] == key] == ["not_an_image"]


def test_duplicate_delivery_starts_one_execution(stack: LocalStack, staged: StagedDataset) -> None:
    data = next((staged.split_dir("test") / "bicycle").iterdir()).read_bytes()
    key = upload(stack, data, "twice.png")
    first = outcome(stack, key)
    event = json.loads(
        (Path(__file__).parents[1] / "events" / "s3_object_created_aws_docs_sample.json").read_text()
    )
    event["detail"]["bucket"]["name"] = stack.resources.bucket
    name = ObjectRef(stack.resources.bucket, key, first["etag"]).execution_name()
    run = stack.client("stepfunctions").describe_execution(
        executionArn=execution_arn(stack.resources.state_machine_arn, name)
    )
    sequencer = json.loads(run["input"])["object"]["sequencer"]  # the same event: the same put's
    event["detail"]["object"] = {"key": key, "etag": first["etag"], "size": len(data), "sequencer": sequencer}
    answer = stack.client("lambda").invoke(FunctionName="scones-start", Payload=json.dumps(event))
    result = json.loads(answer["Payload"].read())
    assert (result["started"], result["outcome"]) == (False, "duplicate")
    assert run["executionArn"] == first["execution_id"] == outcome(stack, key)["execution_id"]


def test_metrics_land_in_cloudwatch(stack: LocalStack, staged: StagedDataset) -> None:
    data = next((staged.split_dir("test") / "bicycle").iterdir()).read_bytes()
    uploaded_at = time.time()
    outcome(stack, upload(stack, data, "counted.png"))
    quiet(stack)  # the start function's count is published when its invocation ends
    cloudwatch = stack.client("cloudwatch")
    end = time.time() + 60
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "received",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "SconesUnlimited",
                        "MetricName": "ImagesReceived",
                        "Dimensions": [{"Name": "service", "Value": "start"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=int(uploaded_at),  # this upload's, not the earlier tests' (CloudWatch keeps seconds)
        EndTime=end,
    )
    assert sum(result["MetricDataResults"][0]["Values"]) >= 1


def test_the_reconciler_takes_the_genuine_scheduled_event_and_leaves_young_uploads_alone(
    stack: LocalStack, staged: StagedDataset
) -> None:
    """On AWS the hourly schedule sends EventBridge's "Scheduled Event": no `min_age_s`, so the
    function's own 900 s applies, and an upload of a moment ago (its run may be going) is left alone."""
    events, lam = stack.client("events"), stack.client("lambda")
    data = next((staged.split_dir("test") / "bicycle").iterdir()).read_bytes()
    events.disable_rule(Name=stack.resources.rule_name)  # an upload whose event is lost
    try:
        key = upload(stack, data, "lost-event.png")
    finally:
        events.enable_rule(Name=stack.resources.rule_name)
    scheduled = (EVENTS / "eventbridge_scheduled_event_aws_docs_sample.json").read_bytes()
    answer = lam.invoke(FunctionName="scones-reconcile", Payload=scheduled)
    assert "FunctionError" not in answer, answer["Payload"].read()
    report = json.loads(answer["Payload"].read())
    assert report["too_young"] >= 1 and key not in report["started"]
    now = lam.invoke(FunctionName="scones-reconcile", Payload=json.dumps({"min_age_s": 0}).encode())
    assert key in json.loads(now["Payload"].read())["started"]  # the local stack's start-up asks for that
    assert outcome(stack, key)["outcome"] in ("accepted", "review")


@pytest.mark.parametrize("handler", ["start", "serialize", "classify", "filter", "record", "reconcile"])
def test_handler_modules_never_import_torch(handler: str) -> None:
    code = f"import sys, handlers.{handler}; sys.exit('torch' in sys.modules or 'onnxruntime' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


@pytest.mark.parametrize(
    "name", ["with space.png", "c++ + more.png", "vélo ünïcode.png", "100% real.png", "named like a folder/"]
)
def test_awkward_keys_are_decoded_and_recorded(stack: LocalStack, staged: StagedDataset, name: str) -> None:
    data = next((staged.split_dir("test") / "bicycle").iterdir()).read_bytes()
    key = upload(stack, data, name)
    record = outcome(stack, key)
    assert record["key"] == key and record["outcome"] in ("accepted", "review")


def test_waiting_on_an_upload_again_waits_for_the_new_version_not_the_old_outcome(
    stack: LocalStack, staged: StagedDataset, tmp_path: Path
) -> None:
    """`scones submit --wait` of a key that already has a record: the old version's must not answer."""
    s3, bucket = stack.client("s3"), stack.resources.bucket
    first, second = sorted((staged.split_dir("test") / "bicycle").iterdir())[:2]
    key = upload(stack, first.read_bytes(), "same-name.png")
    old = outcome(stack, key)
    again = tmp_path / "same-name.png"
    again.write_bytes(second.read_bytes())
    environment = os.environ | {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
    }
    prefix = key.rsplit("/", 1)[0]
    submitted = subprocess.run(
        [
            *(sys.executable, "-m", "service.cli", "submit", str(again)),
            *("--prefix", prefix, "--wait", "--timeout", "120"),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,  # past submit's own timeout: it reports a wait that ran out
        check=False,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    assert etag != old["etag"]
    index = wait_for_outcomes(s3, bucket, [key], timeout_s=60, poll_s=0.05, versions={key: etag})
    new = index.records[key]
    assert f"{key}: {new['outcome']} " in submitted.stdout, "the new version's outcome is printed"
    assert not index.duplicates  # the two versions' records are not one upload's duplicates


def test_submit_waits_for_its_version_in_a_versioned_bucket(
    stack: LocalStack, staged: StagedDataset, tmp_path: Path
) -> None:
    """A versioned bucket names records by version id: `scones submit --wait` finds its upload's."""
    s3, bucket = stack.client("s3"), stack.resources.bucket
    image = tmp_path / f"versioned-{uuid.uuid4().hex[:8]}.png"
    image.write_bytes(next((staged.split_dir("test") / "motorcycle").iterdir()).read_bytes())
    environment = os.environ | {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
    }
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    try:
        submitted = subprocess.run(
            [sys.executable, "-m", "service.cli", "submit", str(image), "--wait", "--timeout", "120"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    key = f"inbox/{image.name}"
    version = s3.head_object(Bucket=bucket, Key=key)["VersionId"]
    record = outcome(stack, key)
    assert record["version_id"] == version != "null"
    assert f"{key}: {record['outcome']} " in submitted.stdout


def test_sagemaker_commands_default_to_the_local_stacks_own_sagemaker_role(stack: LocalStack) -> None:
    """Without --role, `scones train --on sagemaker` on the local stack passes the role it created,
    as on AWS it passes the template's SageMakerExecutionRole."""
    from service.cli import _sagemaker_settings, build_parser

    args = build_parser().parse_args(
        ["train", "--on", "sagemaker", "--endpoint-url", stack.aws_endpoint_url, "--region", "us-east-1"]
    )
    settings = _sagemaker_settings(args)
    role = stack.client("iam").get_role(RoleName=settings.role_arn.rsplit("/", 1)[1])["Role"]
    assert role["Arn"] == settings.role_arn
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert settings.bucket == stack.resources.bucket
