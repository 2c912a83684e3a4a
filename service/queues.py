"""Reading an SQS queue whole: what replay (the DLQs) and the snapshot of the local stack both need."""

from __future__ import annotations

from typing import Any


def receive_all(
    sqs: Any, queue_url: str, *, visibility_s: int, attributes: bool = False, wait_s: int = 1
) -> list[dict[str, Any]]:
    """Every message visible on the queue now; each stays hidden `visibility_s` unless deleted or released.

    Stops at the first empty answer, so it long-polls (`wait_s` ≥ 1): a short poll of real SQS asks
    only some of its servers and can come back empty while messages wait. moto answers from all of
    them always, so the local stack's own snapshot may pass 0.
    """
    messages: list[dict[str, Any]] = []
    options = {"MessageAttributeNames": ["All"]} if attributes else {}
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_s,
        VisibilityTimeout=visibility_s,
        **options,
    ).get("Messages", []):
        messages.extend(batch)
    return messages
