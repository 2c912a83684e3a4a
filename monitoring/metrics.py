"""`scones metrics`: the service's CloudWatch metrics over a window, read with GetMetricData.

Works against AWS or the local stack alike (any CloudWatch client). Counts are sums over the
window; confidence and inference latency are CloudWatch percentiles; the breakdown per predicted
class and model version comes from the outcome counts the record function emits with those
dimensions (once per record written) and the confidence the filter function emits.
Replays count again under their new outcome, so after `scones replay` the outcome counts can add up
to more than `received`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from workflow.names import FAILURES_REPLACED, METRICS_NAMESPACE

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
COUNTS: Final = {
    "received": ("start", "ImagesReceived"),
    "accepted": ("record", "ImagesAccepted"),
    "review": ("record", "ImagesSentToReview"),
    "failed": ("record", "ImagesFailed"),
    "duplicate_deliveries": ("start", "DuplicateDeliveries"),
    "uploads_retried": ("start", "UploadsRetried"),  # the same bytes put again after a failure
    "review_items_requeued": ("reconcile", "ReviewItemsRequeued"),
}
# Where earlier versions counted outcomes (by the filter function, before the record): still read,
# so metric history from before the move (a kept local stack, CloudWatch's 15 months) adds up.
LEGACY_COUNTS: Final = {"accepted": ("filter", "ImagesAccepted"), "review": ("filter", "ImagesSentToReview")}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `1h`, `2d` → a timedelta."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h or 2d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass(frozen=True)
class Query:
    id: str
    name: str
    dimensions: dict[str, str]
    stat: str

    def as_request(self, period: int) -> dict[str, Any]:
        return {
            "Id": self.id,
            "MetricStat": {
                "Metric": {
                    "Namespace": METRICS_NAMESPACE,
                    "MetricName": self.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(self.dimensions.items())],
                },
                "Period": period,
                "Stat": self.stat,
            },
        }


def _period(window_s: float, start: datetime, now: datetime | None = None) -> int:
    """One period covering the window, in the unit CloudWatch requires for how far back it starts:
    a multiple of 60 s within 15 days, of 300 s within 63 days, else of 3600 s (or it returns nothing)."""
    age = (now or datetime.now(UTC)) - start
    unit = 60 if age <= timedelta(days=15) else 300 if age <= timedelta(days=63) else 3600
    return max(unit, math.ceil(window_s / unit) * unit)


def _run(cloudwatch: Any, queries: list[Query], start: datetime, end: datetime) -> dict[str, list[float]]:
    """Each query's values; the window is one period, so a query has at most one value."""
    period = _period((end - start).total_seconds(), start)
    values: dict[str, list[float]] = {}
    for first in range(0, len(queries), 100):
        batch = queries[first : first + 100]
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[query.as_request(period) for query in batch], StartTime=start, EndTime=end
        )
        for result in answer["MetricDataResults"]:
            values[result["Id"]] = [float(v) for v in result.get("Values", []) if v is not None]
    return values


def _dimension_sets(cloudwatch: Any, name: str, required: Iterable[str]) -> list[dict[str, str]]:
    wanted = set(required)
    found = []
    for page in cloudwatch.get_paginator("list_metrics").paginate(
        Namespace=METRICS_NAMESPACE, MetricName=name
    ):
        for metric in page["Metrics"]:
            dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            if set(dimensions) == wanted and dimensions not in found:
                found.append(dimensions)
    return found


def _total(values: dict[str, list[float]], query_id: str) -> float:
    return sum(values.get(query_id, []))


def _single(values: dict[str, list[float]], query_id: str) -> float | None:
    found = values.get(query_id, [])
    return round(found[0], 4) if found else None


def read_metrics(cloudwatch: Any, *, since: timedelta, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    # the query reaches a minute past now: CloudWatch files a value under its minute's start
    end = now + timedelta(minutes=1)
    start = end - since - timedelta(minutes=1)
    queries = [Query(key, name, {"service": service}, "Sum") for key, (service, name) in COUNTS.items()]
    queries += [
        Query(f"legacy_{key}", name, {"service": service}, "Sum")
        for key, (service, name) in LEGACY_COUNTS.items()
    ]
    queries += [
        Query(f"confidence_{p}", "Confidence", {"service": "filter"}, p) for p in ("p10", "p50", "p90")
    ]
    versions = [
        d["model_version"]
        for d in _dimension_sets(cloudwatch, "InferenceLatency", ["service", "model_version"])
    ]
    for n, version in enumerate(versions):
        dims = {"service": "classify", "model_version": version}
        queries += [Query(f"latency_{n}_{p}", "InferenceLatency", dims, p) for p in ("p50", "p99")]
        queries.append(Query(f"latency_{n}_count", "InferenceLatency", dims, "SampleCount"))
    classes = _dimension_sets(cloudwatch, "Confidence", ["service", "model_version", "predicted_class"])
    for n, dims in enumerate(classes):
        counted = {**dims, "service": "record"}  # outcomes are counted where they are recorded
        queries += [
            Query(f"class_{n}_accepted", "ImagesAccepted", counted, "Sum"),
            Query(f"class_{n}_review", "ImagesSentToReview", counted, "Sum"),
            Query(f"class_{n}_confidence", "Confidence", dims, "p50"),
        ]
    reasons = [d["reason"] for d in _dimension_sets(cloudwatch, "ImagesFailed", ["service", "reason"])]
    queries += [
        Query(f"reason_{n}", "ImagesFailed", {"service": "record", "reason": r}, "Sum")
        for n, r in enumerate(reasons)
    ]
    # failures a replay's result replaced are outcomes no more: off the failed counts
    queries.append(Query("replaced", FAILURES_REPLACED, {"service": "record"}, "Sum"))
    queries += [
        Query(f"replaced_{n}", FAILURES_REPLACED, {"service": "record", "reason": r}, "Sum")
        for n, r in enumerate(reasons)
    ]
    values = _run(cloudwatch, queries, start, end)

    counts = {key: int(_total(values, key) + _total(values, f"legacy_{key}")) for key in COUNTS}
    counts["failed"] = max(0, counts["failed"] - int(_total(values, "replaced")))
    failed_by_reason = {
        reason: int(_total(values, f"reason_{n}") - _total(values, f"replaced_{n}"))
        for n, reason in enumerate(reasons)
    }
    received = counts["received"]
    by_class = [
        {
            "model_version": dims["model_version"],
            "predicted_class": dims["predicted_class"],
            "accepted": int(_total(values, f"class_{n}_accepted")),
            "review": int(_total(values, f"class_{n}_review")),
            "confidence_p50": _single(values, f"class_{n}_confidence"),
        }
        for n, dims in enumerate(classes)
    ]
    return {
        "window": {
            "start": (now - since).isoformat(timespec="seconds"),
            "end": now.isoformat(timespec="seconds"),
        },
        **counts,
        "rates": {
            key: round(counts[key] / received, 4) if received else None
            for key in ("accepted", "review", "failed")
        },
        "confidence": {p: _single(values, f"confidence_{p}") for p in ("p10", "p50", "p90")},
        "inference_latency_ms": {
            version: {
                "p50": _single(values, f"latency_{n}_p50"),
                "p99": _single(values, f"latency_{n}_p99"),
                "count": int(_total(values, f"latency_{n}_count")),
            }
            for n, version in enumerate(versions)
            if _total(values, f"latency_{n}_count")
        },
        "by_class": [row for row in by_class if row["accepted"] or row["review"]],
        "failed_by_reason": {reason: count for reason, count in failed_by_reason.items() if count > 0},
    }


def format_table(metrics: dict[str, Any]) -> str:
    """The metrics as a plain-text table for the terminal."""

    def show(value: object) -> str:
        return "-" if value is None else str(value)

    rates = metrics["rates"]
    lines = [
        f"window {metrics['window']['start']} .. {metrics['window']['end']}",
        "",
        f"{'images received':<26}{metrics['received']:>8}",
        f"{'accepted':<26}{metrics['accepted']:>8}   rate {show(rates['accepted'])}",
        f"{'sent to review':<26}{metrics['review']:>8}   rate {show(rates['review'])}",
        f"{'failed':<26}{metrics['failed']:>8}   rate {show(rates['failed'])}",
        f"{'duplicate deliveries':<26}{metrics['duplicate_deliveries']:>8}",
        f"{'uploads retried (re-put)':<26}{metrics['uploads_retried']:>8}",
        f"{'review items queued again':<26}{metrics['review_items_requeued']:>8}",
        "",
        "confidence  p10 {p10}  p50 {p50}  p90 {p90}".format(
            **{k: show(v) for k, v in metrics["confidence"].items()}
        ),
    ]
    for version, latency in metrics["inference_latency_ms"].items():
        lines.append(
            f"inference latency (model {version})  p50 {show(latency['p50'])} ms"
            f"  p99 {show(latency['p99'])} ms  ({latency['count']} calls)"
        )
    if metrics["by_class"]:
        lines += ["", f"{'model version':<28}{'predicted':<12}{'accepted':>9}{'review':>8}{'conf p50':>10}"]
        lines += [
            f"{row['model_version']:<28}{row['predicted_class']:<12}{row['accepted']:>9}{row['review']:>8}"
            f"{show(row['confidence_p50']):>10}"
            for row in metrics["by_class"]
        ]
    if metrics["failed_by_reason"]:
        lines += [
            "",
            "failed by reason: " + ", ".join(f"{k} {v}" for k, v in metrics["failed_by_reason"].items()),
        ]
    return "\n".join(lines)
