"""The load run: a burst of uploads with bad inputs, duplicate deliveries and an endpoint outage.

Then the accounting: every upload must end with exactly one outcome (uploads = accepted + review +
failed, lost 0, duplicated 0). Bad inputs must fail with their own reason code; valid images must not
fail for a reason of their own. Uploads the outage failed are replayed once the endpoint is back,
and must then end as normal outcomes. `bench/load.py` runs it at full size; a test runs a small one.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from handlers.aws import StepFunctionsStarter
from scones.outcomes import REPLAYABLE_REASONS
from scones.steps import parse_iso
from service.local_stack import LocalStack
from service.outcome_watch import OutcomeIndex, wait_for_outcomes
from service.replay import replay_failed
from service.sample_uploads import INVALID, VALID


@dataclass(frozen=True)
class LoadPlan:
    uploads: int = 1000
    bad_share: float = 0.10
    duplicate_share: float = 0.05
    outage_s: float = 10.0
    concurrency: int = 8
    seed: int = 0


@dataclass(frozen=True)
class Upload:
    key: str
    data: bytes
    expected_reason: str | None  # the reason code a bad input must fail with; None for an image


def object_created_event(
    bucket: str, key: str, etag: str, size: int, sequencer: str | None = None
) -> dict[str, Any]:
    """The detail of S3's EventBridge "Object Created" event as AWS sends it (key URL-encoded). The
    `sequencer` of the put it announces, when known: without one, the start function takes an event
    for an existing run as a duplicate delivery (with another one, as the same bytes put again)."""
    from urllib.parse import quote_plus

    obj = {"key": quote_plus(key, safe="/"), "size": size, "etag": etag}
    return {
        "version": "0",
        "bucket": {"name": bucket},
        "object": obj if sequencer is None else obj | {"sequencer": sequencer},
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": "123456789012",
        "reason": "PutObject",
    }


def plan_uploads(plan: LoadPlan, images: list[bytes]) -> list[Upload]:
    rng = random.Random(plan.seed)
    folder = f"inbox/load-{uuid.uuid4().hex[:8]}"
    bad_kinds = [(name, make(), reason) for name, (make, reason) in INVALID.items()]
    odd_images = [(name, make()) for name, make in VALID.items()]
    uploads = []
    for n in range(plan.uploads):
        if rng.random() < plan.bad_share:
            name, data, reason = rng.choice(bad_kinds)
            uploads.append(Upload(f"{folder}/{n:05d}-{name}", data, reason))
        elif rng.random() < 0.05:
            name, data = rng.choice(odd_images)
            uploads.append(Upload(f"{folder}/{n:05d}-{name}", data, None))
        else:
            uploads.append(Upload(f"{folder}/{n:05d}.png", images[n % len(images)], None))
    return uploads


def run_load(stack: LocalStack, images: list[bytes], plan: LoadPlan = LoadPlan()) -> dict[str, Any]:
    uploads = plan_uploads(plan, images)
    rng = random.Random(plan.seed + 1)
    duplicates = {upload.key for upload in uploads if rng.random() < plan.duplicate_share}
    s3 = stack.client("s3", max_pool_connections=plan.concurrency)
    events = stack.client("events")
    bucket = stack.resources.bucket
    uploaded_at: dict[str, float] = {}
    outage_at = len(uploads) // 2

    def send(index: int) -> None:
        upload = uploads[index]
        uploaded_at[upload.key] = time.time()
        etag = s3.put_object(Bucket=bucket, Key=upload.key, Body=upload.data)["ETag"].strip('"')
        if upload.key in duplicates:  # S3 delivers at least once: the same event again
            detail = object_created_event(bucket, upload.key, etag, len(upload.data))
            events.put_events(
                Entries=[
                    {
                        "Source": "aws.s3",
                        "DetailType": "Object Created",
                        "Detail": json.dumps(detail),
                        "Resources": [f"arn:aws:s3:::{bucket}"],
                    }
                ]
            )

    outage = threading.Event()

    def endpoint_outage() -> None:
        outage.wait()
        stack.endpoint.go_down()
        time.sleep(plan.outage_s)
        stack.endpoint.come_back()

    outage_runner = ThreadPoolExecutor(1, thread_name_prefix="outage")
    outage_done = outage_runner.submit(endpoint_outage)  # its error (e.g. the port taken) is raised below
    started = time.time()
    try:
        with ThreadPoolExecutor(plan.concurrency) as pool:
            sent: list[Future[None]] = []
            for index in range(len(uploads)):
                if index == outage_at and plan.outage_s > 0:
                    wait(sent)  # the uploads before it are sent, not only queued: the outage comes mid-burst
                    outage.set()
                sent.append(pool.submit(send, index))
            for upload in sent:
                upload.result()  # a failed upload is the load run's error, not a "lost" outcome later
    finally:
        outage.set()  # (an outage not begun yet begins and ends now: the endpoint is up afterwards)
        outage_runner.shutdown()
    outage_done.result()
    keys = [upload.key for upload in uploads]
    first = wait_for_outcomes(s3, bucket, keys, timeout_s=600 + plan.uploads)
    recorded = [parse_iso(record["recorded_at"]).timestamp() for record in first.records.values()]
    wall = (max(recorded) - started) if recorded else float("nan")
    latencies = [
        (parse_iso(record["recorded_at"]).timestamp() - uploaded_at[key]) * 1000
        for key, record in first.records.items()
    ]
    first_counts = Counter(record["outcome"] for record in first.records.values())
    failed_by_reason = Counter(
        record.get("reason", "?") for record in first.records.values() if record["outcome"] == "failed"
    )

    report = replay_failed(
        s3,
        StepFunctionsStarter(stack.client("stepfunctions"), stack.resources.state_machine_arn),
        bucket,
        reasons=REPLAYABLE_REASONS,
        sqs=stack.client("sqs"),
        dead_letter_queue_url=stack.resources.dead_letter_queue_url,
    )
    final = _settle(stack, keys, replayed=set(report.replayed))
    ignored = _metric_sum(stack, "DuplicateDeliveries", since=started)
    counts = Counter(record["outcome"] for record in final.records.values())
    wrong = _wrong_outcomes(uploads, final)
    return {
        "uploads": len(uploads),
        "accepted": counts["accepted"],
        "review": counts["review"],
        "failed": counts["failed"],
        "lost": len(set(keys) - set(final.records)),
        "duplicated": len(final.duplicates),
        "bad_inputs": sum(upload.expected_reason is not None for upload in uploads),
        "duplicate_deliveries": len(duplicates),
        "duplicate_deliveries_ignored": ignored,
        "outage_s": plan.outage_s,
        # classify attempts that met the outage (each retried by the workflow, or failed and replayed)
        "endpoint_errors": _metric_sum(stack, "EndpointErrors", since=started, service="classify"),
        "wrong_outcomes": wrong,
        "before_replay": {
            "accepted": first_counts["accepted"],
            "review": first_counts["review"],
            "failed": first_counts["failed"],
            "failed_by_reason": dict(failed_by_reason),
        },
        "replayed": len(report.replayed),
        "images_per_s": round(len(first.records) / wall, 1) if recorded else 0.0,
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            "p99": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
        },
    }


def _metric_sum(stack: LocalStack, name: str, since: float, service: str = "start") -> int:
    """The sum of one of a function's CloudWatch metrics since `since` (after deliveries finish)."""
    import service.moto_adapters as adapters
    from workflow.names import METRICS_NAMESPACE

    installed = adapters.current()
    if installed is not None:
        installed.delivery.wait_idle(60)
    result = stack.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "metric",
                "MetricStat": {
                    "Metric": {
                        "Namespace": METRICS_NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [{"Name": "service", "Value": service}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        # from the run's start, on the whole second (CloudWatch keeps seconds); not earlier: other
        # runs may have counted duplicates too
        StartTime=datetime.fromtimestamp(math.floor(since), UTC),
        EndTime=datetime.fromtimestamp(time.time() + 60, UTC),
    )
    return int(sum(result["MetricDataResults"][0]["Values"]))


def _settle(stack: LocalStack, keys: list[str], replayed: set[str], timeout_s: float = 300) -> OutcomeIndex:
    """Wait until no replayed upload still has its failure record, then index every key's records."""
    s3 = stack.client("s3")
    deadline = time.monotonic() + timeout_s
    while True:
        index = wait_for_outcomes(s3, stack.resources.bucket, keys, timeout_s=timeout_s)
        pending = [key for key in replayed if index.records.get(key, {}).get("outcome") == "failed"]
        if (not pending and not index.duplicates) or time.monotonic() > deadline:
            return index
        time.sleep(0.5)


def _wrong_outcomes(uploads: list[Upload], index: OutcomeIndex) -> list[dict[str, Any]]:
    """Uploads whose outcome is not what their kind must get."""
    wrong = []
    for upload in uploads:
        record = index.records.get(upload.key)
        if record is None:
            continue
        got = record.get("reason") if record["outcome"] == "failed" else record["outcome"]
        if upload.expected_reason is not None and got != upload.expected_reason:
            wrong.append({"key": upload.key, "expected": upload.expected_reason, "got": got})
        elif upload.expected_reason is None and record["outcome"] == "failed":
            wrong.append({"key": upload.key, "expected": "classified", "got": got})
    return wrong
