"""`scones up` in its own process, as a user runs it: started, read for its endpoint, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

BIN = Path(sys.executable).parent


class SconesUp:
    def __init__(self, scones_home: Path, *arguments: str) -> None:
        environment = {**os.environ, "SCONES_HOME": str(scones_home), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [str(BIN / "scones"), "up", "--port", "0", *arguments],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.url = self._read_url()

    def _read_url(self, timeout_s: float = 120) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if match := re.search(r"AWS endpoint .*: (http://127\.0\.0\.1:\d+)", line):
                return match.group(1)
        self.process.kill()
        raise AssertionError("scones up did not come up:\n" + "".join(self.lines))

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

    def stop(self, timeout_s: float = 120) -> str:
        """SIGTERM (our own child, by PID) and wait; everything it printed."""
        self.process.send_signal(signal.SIGTERM)
        try:
            remaining = self.process.communicate(timeout=timeout_s)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        output = "".join(self.lines) + remaining
        assert self.process.returncode == 0, output
        assert "stopping the local stack" in output
        return output
