"""Draining a queue: a short poll of real SQS samples only some servers, so an empty answer can lie."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.queues import receive_all


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
        return {"Messages": [{"Body": body, "ReceiptHandle": body} for body in batch]} if batch else {}


def test_draining_a_queue_long_polls_so_no_waiting_message_is_missed() -> None:
    queue = SampledQueue(on_other_servers=[f"m{i}" for i in range(13)])
    received = receive_all(queue, "url", visibility_s=60)
    assert sorted(m["Body"] for m in received) == sorted(f"m{i}" for i in range(13))


def test_a_short_poll_would_have_missed_them() -> None:
    queue = SampledQueue(on_other_servers=["m0"])
    assert receive_all(queue, "url", visibility_s=60, wait_s=0) == []
