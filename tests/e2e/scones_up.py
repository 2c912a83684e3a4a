"""`scones up` in its own process, as a user runs it: started, read for its endpoint, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import boto3

BIN = Path(sys.executable).parent


class SconesUp:
    """The child's output is read all along by a thread: a child whose pipe is full blocks on its next
    print (with the logging lock held, every function would stop)."""

    def __init__(self, scones_home: Path, *arguments: str, sigint_ignored: bool = False) -> None:
        """`sigint_ignored`: started as a script's `scones up &` starts it, with SIGINT ignored."""
        environment = {**os.environ, "SCONES_HOME": str(scones_home), "PYTHONUNBUFFERED": "1"}
        command = [str(BIN / "scones"), "up", "--port", "0", *arguments]
        if sigint_ignored:  # an ignored signal stays ignored across exec: the process is still ours
            command = ["bash", "-c", 'trap "" INT; exec "$0" "$@"', *command]
        self.process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._url_found = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, name="scones-up-output", daemon=True)
        self._reader.start()
        # a kept stack restores its snapshot and re-drives what had no outcome before it prints it
        if not self._url_found.wait(timeout=300) or not self.url:
            self.process.kill()
            self._reader.join(timeout=10)
            raise AssertionError("scones up did not come up:\n" + self.output)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if not self.url and (match := re.search(r"AWS endpoint .*: (http://127\.0\.0\.1:\d+)", line)):
                self.url = match.group(1)
                self._url_found.set()
        self._url_found.set()  # the output ended: the child is gone

    @property
    def output(self) -> str:
        """Everything the child printed so far."""
        return "".join(self.lines)

    def client(self, service: str, **config: Any) -> Any:
        from botocore.config import Config

        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(**config),
        )

    def stop(self, timeout_s: float = 120, stop_signal: int = signal.SIGTERM) -> str:
        """SIGTERM, or `stop_signal` (our own child, by PID), and wait; everything it printed."""
        self.process.send_signal(stop_signal)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            self._reader.join(timeout=10)
        output = self.output
        assert self.process.returncode == 0, output
        assert "stopping the local stack" in output
        return output
