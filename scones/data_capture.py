"""SageMaker-format data capture: sampled request/response pairs written to S3 as JSON Lines.

Records follow SageMaker's capture schema (`captureData.endpointInput/endpointOutput`,
`eventMetadata`, `eventVersion`) and its key layout
`<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-mmm>-<uuid>.jsonl`, so the same readers work on
captures from the local endpoint and from a SageMaker endpoint.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scones.defaults import DEFAULT_ENDPOINT_NAME

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureConfig:
    bucket: str
    prefix: str = "datacapture"
    endpoint_name: str = DEFAULT_ENDPOINT_NAME
    variant_name: str = "AllTraffic"
    sampling_percentage: float = 100.0
    flush_interval_s: float = 1.0
    max_buffered: int = 500


def capture_record(
    request_body: bytes, request_type: str, response_body: str, *, inference_id: str | None = None
) -> dict[str, Any]:
    """One capture line in SageMaker's schema."""
    metadata: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "inferenceTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }
    if inference_id:
        metadata["inferenceId"] = inference_id
    return {
        "captureData": {
            "endpointInput": {
                "observedContentType": request_type,
                "mode": "INPUT",
                "data": base64.b64encode(request_body).decode("ascii"),
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": response_body,
                "encoding": "JSON",
            },
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }


class DataCapture:
    """Buffers sampled records and writes them to S3 in batches from a background thread."""

    def __init__(self, config: CaptureConfig, s3: Any, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._s3 = s3
        self._rng = rng or random.Random()
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        self._thread.start()

    def record(self, request_body: bytes, request_type: str, response_body: str) -> bool:
        """Capture one exchange if sampled; returns whether it was kept."""
        if self._rng.uniform(0.0, 100.0) >= self.config.sampling_percentage:
            return False
        line = capture_record(request_body, request_type, response_body)
        with self._lock:
            self._buffer.append(line)
            full = len(self._buffer) >= self.config.max_buffered
        if full:
            self._wake.set()  # the writer thread flushes now: a request never waits on, or fails with, S3
        return True

    def flush(self) -> str | None:
        """Write what is buffered as one JSONL object; returns its key, or None if nothing was buffered."""
        with self._lock:
            lines, self._buffer = self._buffer, []
        if not lines:
            return None
        now = datetime.now(UTC)
        key = (
            f"{self.config.prefix}/{self.config.endpoint_name}/{self.config.variant_name}/"
            f"{now:%Y/%m/%d/%H}/{now:%M-%S}-{now.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
        )
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        self._s3.put_object(
            Bucket=self.config.bucket, Key=key, Body=body.encode(), ContentType="application/jsonl"
        )
        return key

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # capture must never take the endpoint down; the batch is dropped
            logger.exception("data capture flush to s3://%s failed", self.config.bucket)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.flush_interval_s)
            self._wake.clear()
            self._flush_logged()

    def close(self) -> None:
        """Stop the writer thread and write what is still buffered (failures are logged, not raised)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)  # a put in flight finishes first
        self._flush_logged()
