"""Hand the `start` function a sample S3 "Object Created" event, as EventBridge would.

    python examples/invoke_start.py tests/events/s3_object_created_aws_docs_sample.json
    python examples/invoke_start.py --invoke tests/events/s3_object_created_powertools_sample.json

Without `--invoke` it only parses the event the way the handler does and prints the object version
and the run name it would start (or why it starts nothing). With `--invoke`, against a running
`scones up` that `AWS_ENDPOINT_URL` points at, it invokes the stack's `scones-start` function
through the Lambda API with the event moved to the stack's bucket and inbox, so the run really
starts (its outcome says "object_missing" unless the object exists there). On AWS, give the names
CloudFormation chose with `--function` and `--bucket`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scones.objects import INBOX_PREFIX, NotAnUpload, object_from_event
from workflow.names import FUNCTIONS, StackNames


def moved_to_stack(event: dict[str, Any], bucket: str) -> dict[str, Any]:
    detail = event["detail"]
    key = detail["object"]["key"]
    moved = {**detail["object"], "key": key if key.startswith(INBOX_PREFIX) else INBOX_PREFIX + key}
    return {
        **event,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {**detail, "bucket": {"name": bucket}, "object": moved},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("event", type=Path, help="a JSON event file (see tests/events/)")
    parser.add_argument("--invoke", action="store_true", help="invoke the stack's start function with it")
    names = StackNames()
    start = next(spec for spec in FUNCTIONS if spec.logical_id == "StartFunction")
    parser.add_argument(
        "--function", default=names.function(start), help="the start function (on AWS: its generated name)"
    )
    parser.add_argument(
        "--bucket", default=names.bucket, help="the data bucket (on AWS: the stack's DataBucketName)"
    )
    args = parser.parse_args(argv)
    event = json.loads(args.event.read_text())
    if args.invoke:
        import boto3

        event = moved_to_stack(event, args.bucket)
        answer = boto3.client("lambda").invoke(FunctionName=args.function, Payload=json.dumps(event))
        print(json.dumps(json.loads(answer["Payload"].read()), indent=2))
        return 1 if answer.get("FunctionError") else 0
    try:
        obj = object_from_event(event)
    except NotAnUpload as ignored:
        print(f"starts nothing: {ignored}")
        return 0
    print(json.dumps({"object": obj.as_dict(), "execution_name": obj.execution_name()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
