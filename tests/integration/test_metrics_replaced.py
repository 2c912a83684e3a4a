"""`scones metrics` against moto's CloudWatch: failures a replay replaced are outcomes no more."""

from __future__ import annotations

from datetime import timedelta

from monitoring.metrics import read_metrics
from service.moto_adapters.server import start_moto_server
from workflow.names import FAILURES_REPLACED, METRICS_NAMESPACE


def test_failures_a_replay_replaced_come_off_the_failed_counts() -> None:
    with start_moto_server() as aws:
        aws.reset()  # moto's backends are process-wide
        cloudwatch = aws.client("cloudwatch")

        def count(name: str, value: float, **dimensions: str) -> None:
            cloudwatch.put_metric_data(
                Namespace=METRICS_NAMESPACE,
                MetricData=[
                    {
                        "MetricName": name,
                        "Dimensions": [
                            {"Name": k, "Value": v} for k, v in {"service": "record", **dimensions}.items()
                        ],
                        "Value": value,
                    }
                ],
            )

        for dimensions in ({}, {"reason": "endpoint_unavailable"}):
            count("ImagesFailed", 3, **dimensions)
            count(FAILURES_REPLACED, 2, **dimensions)
        count("ImagesFailed", 1)
        count("ImagesFailed", 1, reason="not_an_image")
        count("ImagesAccepted", 2)
        metrics = read_metrics(cloudwatch, since=timedelta(minutes=10))
    assert metrics["failed"] == 2 and metrics["accepted"] == 2
    assert metrics["failed_by_reason"] == {"endpoint_unavailable": 1, "not_an_image": 1}
