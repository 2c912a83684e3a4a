"""Reading an SQS queue whole: what replay (the DLQs) and the snapshot of the local stack both need."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def receive_each(
    sqs: Any, queue_url: str, *, visibility_s: int, attributes: bool = False, wait_s: int = 1
) -> Iterator[dict[str, Any]]:
    """Each message visible on the queue now, once, batch by batch (so a caller deletes as it goes);
    each stays hidden `visibility_s` unless deleted or released.

    Stops at the first empty answer, so it long-polls (`wait_s` ≥ 1): a short poll of real SQS asks
    only some of its servers and can come back empty while messages wait. moto answers from all of
    them always, so the local stack's own snapshot may pass 0. It also stops at an answer of messages
    all seen already: on a queue too long to read within `visibility_s`, the first ones come back,
    and reading on would go round for ever (what is left is read by the next call).
    """
    seen: set[str] = set()
    options = {"MessageAttributeNames": ["All"]} if attributes else {}
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_s,
        VisibilityTimeout=visibility_s,
        **options,
    ).get("Messages", []):
        fresh = [message for message in batch if message["MessageId"] not in seen]
        if not fresh:
            return
        seen.update(message["MessageId"] for message in fresh)
        yield from fresh


def receive_all(
    sqs: Any, queue_url: str, *, visibility_s: int, attributes: bool = False, wait_s: int = 1
) -> list[dict[str, Any]]:
    """`receive_each`'s messages as a list."""
    return list(receive_each(sqs, queue_url, visibility_s=visibility_s, attributes=attributes, wait_s=wait_s))
