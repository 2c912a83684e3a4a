"""In-memory fakes of the steps' ports, shared by the unit tests (fakes over mocks)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MemoryStarter:
    """Step Functions' StartExecution and DescribeExecution: a name starts once; runs stay RUNNING
    until `finish` closes them."""

    started: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, payload: str) -> bool:
        if name in self.started:
            return False
        self.started[name] = payload
        self.statuses[name] = "RUNNING"
        return True

    def status(self, name: str) -> str | None:
        return self.statuses.get(name)

    def describe(self, name: str) -> tuple[str, str] | None:
        return None if name not in self.started else (self.statuses[name], self.started[name])

    def finish(self, name: str, status: str) -> None:
        self.statuses[name] = status
