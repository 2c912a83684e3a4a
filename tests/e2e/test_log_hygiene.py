"""What the functions log through the local stack never carries image bytes, presigned URLs or credentials."""

from __future__ import annotations

import uuid

from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes
from service.sample_uploads import INVALID, encode, scene
from workflow.names import FUNCTIONS

FORBIDDEN = {
    "base64 PNG": "iVBORw0KGgo",
    "base64 JPEG": "/9j/",
    "the thumbnail field": "thumbnail_png_b64",
    "a presigned URL": "X-Amz-Signature",
    "a signed request": "AWS4-HMAC-SHA256",
    "a secret key name": "SECRET_ACCESS_KEY",
}


def all_log_messages(stack: LocalStack, prefix: str = "/aws/lambda/") -> list[str]:
    """Every function's log lines (a function never invoked has no log group yet)."""
    logs = stack.client("logs")
    groups = {
        group["logGroupName"] for group in logs.describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]
    }
    messages = []
    for spec in FUNCTIONS:
        group = f"{prefix}{stack.names.function(spec)}"
        if spec.logical_id == "ReconcileFunction" and group not in groups:
            continue  # runs when a stack with a data folder starts, not in this one
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            messages += [event["message"] for event in page["events"]]
    return messages


def test_logs_hold_no_image_bytes_urls_or_credentials(stack: LocalStack) -> None:
    folder = f"inbox/logs-{uuid.uuid4().hex[:8]}"
    uploads = {
        f"{folder}/photo.jpg": encode(scene(size=(640, 480)), "JPEG"),
        f"{folder}/picture.png": encode(scene(), "PNG"),
        f"{folder}/notes.jpg": INVALID["notes.jpg"][0](),
    }
    s3 = stack.client("s3")
    for key, data in uploads.items():
        s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=data)
    index = wait_for_outcomes(s3, stack.resources.bucket, uploads, timeout_s=60, poll_s=0.1)
    assert set(index.records) == set(uploads)
    messages = all_log_messages(stack)
    mine = [message for message in messages if folder in message]
    assert mine, "the functions logged these uploads (with their keys as correlation)"
    for what, marker in FORBIDDEN.items():
        leaking = [message[:200] for message in messages if marker in message]
        assert not leaking, f"{what} in the logs: {leaking[:3]}"
