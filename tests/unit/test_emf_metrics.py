"""Tests of the Embedded Metric Format extraction, fed with what aws-lambda-powertools really prints."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from service.moto_adapters.emf_metrics import (
    MetricDatum,
    metrics_from_emf,
    metrics_from_log_text,
    put_emf_metrics,
)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    # powertools shares metrics, dimensions and metadata between Metrics instances: start and end clean
    instance = Metrics(namespace="Scones", service="classify")
    instance.clear_metrics()
    instance.clear_default_dimensions()
    yield instance
    instance.clear_metrics()
    instance.clear_default_dimensions()


def _emf(document: Mapping[str, object]) -> str:
    return json.dumps(document, separators=(",", ":"))


def test_powertools_metric_set_with_repeated_values_and_default_dimensions(metrics: Metrics) -> None:
    metrics.set_default_dimensions(environment="test")
    metrics.add_dimension(name="stage", value="classify")
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=12.5)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=7)
    metrics.add_metric(name="Images", unit=MetricUnit.Count, value=1)
    metrics.add_metadata(key="request", value="r-1")  # metadata is not a dimension
    before = dt.datetime.now(dt.UTC)
    line = _emf(metrics.serialize_metric_set())

    data = {datum.name: datum for datum in metrics_from_emf(line)}

    assert set(data) == {"Latency", "Images"}
    latency = data["Latency"]
    assert latency.namespace == "Scones"
    assert latency.unit == "Milliseconds"
    assert latency.values == (12.5, 7.0)
    assert dict(latency.dimensions) == {"environment": "test", "stage": "classify", "service": "classify"}
    assert latency.storage_resolution == 60
    assert data["Images"].values == (1.0,)
    assert abs((latency.timestamp - before).total_seconds()) < 5
    assert latency.timestamp.tzinfo is not None


def test_powertools_high_resolution_metric(metrics: Metrics) -> None:
    metrics.add_metric(name="QueueDepth", unit=MetricUnit.Count, value=3, resolution=MetricResolution.High)
    metrics.add_metric(name="Slow", unit=MetricUnit.Seconds, value=2)

    data = {datum.name: datum for datum in metrics_from_emf(_emf(metrics.serialize_metric_set()))}

    assert data["QueueDepth"].storage_resolution == 1
    assert data["Slow"].storage_resolution == 60
    assert data["QueueDepth"].as_put_metric_datum()["StorageResolution"] == 1


def test_printed_output_of_a_decorated_handler(metrics: Metrics, capsys: pytest.CaptureFixture[str]) -> None:
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> str:
        print("an ordinary log line")
        metrics.add_metric(name="Routed", unit=MetricUnit.Count, value=event["n"])
        return "ok"

    handler({"n": 2}, LambdaContext())
    handler({"n": 5}, LambdaContext())
    output = capsys.readouterr().out

    data = metrics_from_log_text(output)

    assert [(datum.name, datum.values) for datum in data] == [("Routed", (2.0,)), ("Routed", (5.0,))]
    assert all(dict(datum.dimensions) == {"service": "classify"} for datum in data)


def test_every_dimension_set_is_a_metric_and_missing_members_drop_their_set() -> None:
    line = _emf(
        {
            "_aws": {
                "Timestamp": 1_700_000_000_000,
                "CloudWatchMetrics": [
                    {
                        "Namespace": "NS",
                        "Dimensions": [["Bucket"], ["Bucket", "Prefix"], [], ["Missing"]],
                        "Metrics": [{"Name": "Objects", "Unit": "Count"}, {"Name": "Bytes"}],
                    },
                    {"Namespace": "Other", "Dimensions": [["Bucket"]], "Metrics": [{"Name": "Objects"}]},
                ],
            },
            "Bucket": "data",
            "Prefix": "inbox/",
            "Objects": [1, 2, 3],
            "Bytes": 2048,
        }
    )

    data = metrics_from_emf(line)

    objects = [datum for datum in data if datum.namespace == "NS" and datum.name == "Objects"]
    assert [datum.dimensions for datum in objects] == [
        (("Bucket", "data"),),
        (("Bucket", "data"), ("Prefix", "inbox/")),
        (),
    ]
    assert all(datum.values == (1.0, 2.0, 3.0) for datum in objects)
    byte_data = [datum for datum in data if datum.name == "Bytes"]
    assert len(byte_data) == 3
    assert byte_data[0].unit == "None"
    assert byte_data[0].as_put_metric_datum()["Value"] == 2048.0
    assert [datum.namespace for datum in data].count("Other") == 1
    assert data[0].timestamp == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "START RequestId: 1 Version: $LATEST",
        "{not json",
        '{"level": "INFO", "message": "hello"}',
        '{"_aws": {"Timestamp": 1}}',
        '{"_aws": {"CloudWatchMetrics": [{"Metrics": [{"Name": "M"}]}]}, "M": 1}',
        '[{"_aws": {}}]',
    ],
)
def test_lines_that_are_not_emf_yield_nothing(line: str) -> None:
    assert metrics_from_emf(line) == []


@pytest.mark.parametrize(
    "value",
    ["12", True, None, [1, "2"], [], list(range(101)), {"v": 1}],
)
def test_values_that_are_not_numbers_are_not_published(value: object) -> None:
    line = json.dumps(
        {
            "_aws": {
                "CloudWatchMetrics": [{"Namespace": "NS", "Dimensions": [[]], "Metrics": [{"Name": "M"}]}]
            },
            "M": value,
        }
    )
    assert metrics_from_emf(line) == []


class _RecordingClient:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def put_metric_data(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def test_put_through_a_client_groups_by_namespace() -> None:
    text = "\n".join(
        [
            "hello",
            _emf(
                {
                    "_aws": {
                        "CloudWatchMetrics": [
                            {"Namespace": "A", "Dimensions": [[]], "Metrics": [{"Name": "X"}]}
                        ]
                    },
                    "X": 1,
                }
            ),
            _emf(
                {
                    "_aws": {
                        "CloudWatchMetrics": [
                            {"Namespace": "B", "Dimensions": [[]], "Metrics": [{"Name": "Y"}]}
                        ]
                    },
                    "Y": [1, 2],
                }
            ),
        ]
    )
    client = _RecordingClient()

    assert put_emf_metrics(text, client) == 2

    assert [call["Namespace"] for call in client.calls] == ["A", "B"]
    assert client.calls[0]["MetricData"][0]["Value"] == 1.0
    assert client.calls[1]["MetricData"][0]["Values"] == [1.0, 2.0]
    assert client.calls[1]["MetricData"][0]["Timestamp"].tzinfo is not None


def test_put_into_motos_cloudwatch_backend(metrics: Metrics) -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    backend = CloudWatchBackend("us-east-1", "123456789012")
    metrics.add_metric(name="Classified", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Classified", unit=MetricUnit.Count, value=1)

    assert put_emf_metrics(_emf(metrics.serialize_metric_set()), backend) == 1

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    result = backend.get_metric_data(
        queries=[
            {
                "Id": "classified",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "Scones",
                        "MetricName": "Classified",
                        "Dimensions": [{"Name": "service", "Value": "classify"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        start_time=now - dt.timedelta(minutes=5),
        end_time=now + dt.timedelta(minutes=1),
    )
    assert sum(result[0]["values"]) == 2.0  # moto's backend keys are lower-case


def test_datum_shape_for_put_metric_data() -> None:
    datum = MetricDatum(
        namespace="NS",
        name="M",
        unit="Count",
        dimensions=(("A", "1"),),
        values=(1.0,),
        timestamp=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    )
    assert datum.as_put_metric_datum(naive_utc=True) == {
        "MetricName": "M",
        "Dimensions": [{"Name": "A", "Value": "1"}],
        "Timestamp": dt.datetime(2024, 1, 1),
        "Unit": "Count",
        "StorageResolution": 60,
        "Value": 1.0,
    }
