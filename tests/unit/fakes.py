"""In-memory fakes of the steps' ports, shared by the unit tests (fakes over mocks)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MemoryStarter:
    """Step Functions' StartExecution: a name starts once."""

    started: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, payload: str) -> bool:
        if name in self.started:
            return False
        self.started[name] = payload
        return True
