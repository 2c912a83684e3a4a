"""Reading an SQS queue whole: what replay (the DLQs) and the snapshot of the local stack both need."""

from __future__ import annotations

from typing import Any


def receive_all(
    sqs: Any, queue_url: str, *, visibility_s: int, attributes: bool = False
) -> list[dict[str, Any]]:
    """Every message visible on the queue now; each stays hidden `visibility_s` unless deleted or released."""
    messages: list[dict[str, Any]] = []
    options = {"MessageAttributeNames": ["All"]} if attributes else {}
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        VisibilityTimeout=visibility_s,
        **options,
    ).get("Messages", []):
        messages.extend(batch)
    return messages
