"""Fault injection for the local endpoint: a switch that tests and the load benchmark flip so the model
server fails the way real endpoints do (5xx answers, throttling, slowness, a request the model
refuses). Off unless set.

The switch sits in the server itself (a real HTTP answer, not a mocked client), so everything
between the handler and the endpoint (boto3 retries, timeouts, the workflow's Retry and Catch)
meets the fault as it would on AWS. An outage where nothing listens is `LocalEndpoint.go_down()`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal

FaultMode = Literal["error", "throttle", "slow", "reject"]  # reject: the container answers 400


@dataclass(frozen=True)
class Fault:
    mode: FaultMode
    delay_s: float = 0.0


class FaultSwitch:
    """The fault the next invocations meet: for `count` requests, `duration_s` seconds, or until cleared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._remaining: int | None = None
        self._until: float | None = None
        self.injected = 0  # how many requests met a fault

    def set(
        self,
        mode: FaultMode,
        *,
        count: int | None = None,
        duration_s: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        if mode == "slow" and delay_s <= 0:
            raise ValueError("a slow fault needs delay_s > 0")
        with self._lock:
            self._fault = Fault(mode, delay_s)
            self._remaining = count
            self._until = time.monotonic() + duration_s if duration_s is not None else None

    def clear(self) -> None:
        with self._lock:
            self._fault, self._remaining, self._until = None, None, None

    def take(self) -> Fault | None:
        """The fault for this request, if one is armed (using up one of its count)."""
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            if self._until is not None and time.monotonic() >= self._until:
                self._fault = None
                return None
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._fault = None
            self.injected += 1
            return fault
