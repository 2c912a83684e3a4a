"""Lambda `record`: write the one outcome record of an upload under results/, review/ or failed/."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.runtime import Event, LambdaHandler, MetricUnit, lazy_entry_point, observability
from handlers.settings import RecordSettings


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from handlers.aws import S3ObjectStore, client
    from scones.steps import record_outcome

    settings = RecordSettings.from_environment(environment)
    obs = observability(settings)
    store = S3ObjectStore(client("s3", settings))

    @obs.logger.inject_lambda_context(clear_state=True)
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        state = record_outcome(event, store)
        record = state["record"]
        obs.logger.info(
            "outcome recorded",
            extra={
                "object_key": record["key"],
                "outcome": record["outcome"],
                "record_key": record["record_key"],
                "reason": record.get("reason"),
            },
        )
        if record["outcome"] == "failed":
            with obs.metrics(reason=record.get("reason", "unknown")) as metrics:
                metrics.add_metric(name="ImagesFailed", unit=MetricUnit.Count, value=1)
            with obs.metrics() as metrics:
                metrics.add_metric(name="ImagesFailed", unit=MetricUnit.Count, value=1)
        return state

    return handler


handler = lazy_entry_point(build)
