"""CloudWatch Logs' Embedded Metric Format extraction: EMF log lines become CloudWatch metrics.

In AWS, CloudWatch Logs reads every log event of a Lambda function and, for each JSON event carrying
an `_aws.CloudWatchMetrics` directive, publishes the referenced members as metrics. moto stores log
events but never extracts anything, so `get_metric_data` would see nothing of what the handlers
(aws-lambda-powertools `Metrics`) emit. `metrics_from_emf` is the extraction (a pure function of one
line), and `put_emf_metrics` publishes the result into moto's CloudWatch backend or through a client.

The rules follow the EMF specification:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

- each directive names a `Namespace`, a list of dimension sets (each a list of member names, possibly
  empty) and `Metrics` (`Name`, optional `Unit`, optional `StorageResolution` 1 or 60);
- every metric is published once per dimension set, with the dimension values read from the root
  members of the same document (a dimension set whose member is missing is not published);
- a metric's value is the root member of the same name: a number or an array of up to 100 numbers;
- `_aws.Timestamp` is milliseconds since the epoch.

Lines that are not JSON objects with an `_aws` member are ordinary log lines and yield nothing;
malformed directives yield nothing rather than raising (CloudWatch drops them the same way).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MOTO_VERSION = "5.2.5"

MAX_VALUES_PER_METRIC = 100
MAX_DIMENSIONS_PER_SET = 30
_PUT_BATCH = 1000  # PutMetricData accepts at most 1000 data per call


@dataclass(frozen=True)
class MetricDatum:
    """One metric of one dimension set, with all its values: one PutMetricData datum."""

    namespace: str
    name: str
    unit: str
    dimensions: tuple[tuple[str, str], ...]
    values: tuple[float, ...]
    timestamp: dt.datetime  # timezone-aware, UTC
    storage_resolution: int = 60

    def as_put_metric_datum(self, *, naive_utc: bool = False) -> dict[str, Any]:
        """The datum in PutMetricData's shape (`naive_utc` for moto's backend, which compares naive UTC)."""
        timestamp = self.timestamp.replace(tzinfo=None) if naive_utc else self.timestamp
        datum: dict[str, Any] = {
            "MetricName": self.name,
            "Dimensions": [{"Name": name, "Value": value} for name, value in self.dimensions],
            "Timestamp": timestamp,
            "Unit": self.unit,
            "StorageResolution": self.storage_resolution,
        }
        if len(self.values) == 1:
            datum["Value"] = self.values[0]
        else:
            datum["Values"] = list(self.values)
        return datum


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _values(member: object) -> tuple[float, ...] | None:
    raw = member if isinstance(member, list) else [member]
    if not raw or len(raw) > MAX_VALUES_PER_METRIC:
        return None
    numbers = [_number(item) for item in raw]
    if any(number is None for number in numbers):
        return None
    return tuple(number for number in numbers if number is not None)


def _dimension_value(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _dimension_sets(
    directive: Mapping[str, Any], document: Mapping[str, Any]
) -> list[tuple[tuple[str, str], ...]]:
    declared = directive.get("Dimensions", [[]])
    if not isinstance(declared, list):
        return []
    sets: list[tuple[tuple[str, str], ...]] = []
    for names in declared:
        if not isinstance(names, list) or len(names) > MAX_DIMENSIONS_PER_SET:
            continue
        pairs: list[tuple[str, str]] = []
        for name in names:
            value = _dimension_value(document.get(name)) if isinstance(name, str) else None
            if value is None:
                break
            pairs.append((name, value))
        else:
            if tuple(pairs) not in sets:
                sets.append(tuple(pairs))
    return sets


def _timestamp(metadata: Mapping[str, Any]) -> dt.datetime:
    millis = _number(metadata.get("Timestamp"))
    if millis is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)


def metrics_from_emf(line: str) -> list[MetricDatum]:
    """The metrics CloudWatch would extract from one log line (none for an ordinary log line)."""
    text = line.strip()
    if not text.startswith("{"):
        return []
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return []
    metadata = document.get("_aws") if isinstance(document, dict) else None
    if not isinstance(metadata, dict):
        return []
    directives = metadata.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return []
    timestamp = _timestamp(metadata)
    data: list[MetricDatum] = []
    for directive in directives:
        if not isinstance(directive, dict):
            continue
        namespace = directive.get("Namespace")
        metrics = directive.get("Metrics")
        if not isinstance(namespace, str) or not namespace or not isinstance(metrics, list):
            continue
        dimension_sets = _dimension_sets(directive, document)
        for metric in metrics:
            if not isinstance(metric, dict) or not isinstance(metric.get("Name"), str):
                continue
            name: str = metric["Name"]
            values = _values(document.get(name))
            if values is None:
                continue
            unit = metric.get("Unit")
            resolution = 1 if metric.get("StorageResolution") == 1 else 60
            data.extend(
                MetricDatum(
                    namespace=namespace,
                    name=name,
                    unit=unit if isinstance(unit, str) and unit else "None",
                    dimensions=dimensions,
                    values=values,
                    timestamp=timestamp,
                    storage_resolution=resolution,
                )
                for dimensions in dimension_sets
            )
    return data


def metrics_from_log_text(text: str) -> list[MetricDatum]:
    """All metrics of a block of log output, one log event per line."""
    return [datum for line in text.splitlines() for datum in metrics_from_emf(line)]


def _by_namespace(data: Iterable[MetricDatum]) -> dict[str, list[MetricDatum]]:
    grouped: dict[str, list[MetricDatum]] = {}
    for datum in data:
        grouped.setdefault(datum.namespace, []).append(datum)
    return grouped


def put_emf_metrics(text: str, cloudwatch: object) -> int:
    """Publish the EMF metrics found in `text`; return how many data were published.

    `cloudwatch` is moto's `CloudWatchBackend` (written to directly, as CloudWatch Logs would) or
    anything with boto3's `put_metric_data(Namespace=..., MetricData=[...])`.
    """
    from moto.cloudwatch.models import CloudWatchBackend

    data = metrics_from_log_text(text)
    for namespace, group in _by_namespace(data).items():
        for start in range(0, len(group), _PUT_BATCH):
            batch = group[start : start + _PUT_BATCH]
            if isinstance(cloudwatch, CloudWatchBackend):
                cloudwatch.put_metric_data(
                    namespace, [datum.as_put_metric_datum(naive_utc=True) for datum in batch]
                )
            else:
                put = getattr(cloudwatch, "put_metric_data")  # noqa: B009 - a boto3 client, untyped here
                put(Namespace=namespace, MetricData=[datum.as_put_metric_datum() for datum in batch])
    return len(data)
