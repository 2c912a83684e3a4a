"""Draining a queue: a short poll of real SQS samples only some servers, so an empty answer can lie."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.queues import receive_all, receive_each


@dataclass
class SampledQueue:
    """SQS as documented: a short poll (WaitTimeSeconds=0) asks a subset of the servers and can
    answer empty while messages wait (here: always, while any are on the server it skips); a long
    poll asks them all."""

    on_sampled_servers: list[str] = field(default_factory=list)
    on_other_servers: list[str] = field(default_factory=list)

    def receive_message(self, **request: Any) -> dict[str, Any]:
        servers = [self.on_sampled_servers]
        if request.get("WaitTimeSeconds", 0) > 0:
            servers.append(self.on_other_servers)
        batch: list[str] = []
        for server in servers:
            while server and len(batch) < request["MaxNumberOfMessages"]:
                batch.append(server.pop(0))  # received: hidden for the visibility timeout
        return {"Messages": [_message(body) for body in batch]} if batch else {}


def _message(body: str) -> dict[str, str]:
    return {"Body": body, "ReceiptHandle": f"receipt-{body}", "MessageId": f"id-{body}"}


def test_draining_a_queue_long_polls_so_no_waiting_message_is_missed() -> None:
    queue = SampledQueue(on_other_servers=[f"m{i}" for i in range(13)])
    received = receive_all(queue, "url", visibility_s=60)
    assert sorted(m["Body"] for m in received) == sorted(f"m{i}" for i in range(13))


def test_a_short_poll_would_have_missed_them() -> None:
    queue = SampledQueue(on_other_servers=["m0"])
    assert receive_all(queue, "url", visibility_s=60, wait_s=0) == []


@dataclass
class LongQueue:
    """A queue too long to read within the visibility timeout: once every message has been received,
    the first ones are visible again and come back (here: round and round)."""

    bodies: list[str]
    received: int = 0

    def receive_message(self, **request: Any) -> dict[str, Any]:
        batch = [
            self.bodies[(self.received + n) % len(self.bodies)] for n in range(request["MaxNumberOfMessages"])
        ]
        self.received += len(batch)
        return {"Messages": [_message(body) for body in batch]}


def test_reading_a_queue_stops_when_its_messages_come_round_again() -> None:
    queue = LongQueue([f"m{i}" for i in range(25)])
    read = [message["Body"] for message in receive_each(queue, "url", visibility_s=60)]
    assert sorted(read) == sorted(queue.bodies), "each message once, and the reading ends"
