"""Lambda `filter`: apply the confidence threshold (0.85 by default) and build the outcome record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.runtime import Event, LambdaHandler, MetricUnit, lazy_entry_point, observability
from handlers.settings import FilterSettings


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from scones.steps import filter_by_confidence

    settings = FilterSettings.from_environment(environment)
    obs = observability(settings)

    @obs.lambda_context
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        with obs.correlated(event):
            state = filter_by_confidence(event, settings.threshold)
            record = state["record"]
            obs.logger.info(
                "routed", extra={"outcome": record["outcome"], "confidence": record["confidence"]}
            )
        # the outcome itself is counted where it is recorded (handlers.record)
        with obs.metrics() as metrics:
            metrics.add_metric(name="Confidence", unit=MetricUnit.NoUnit, value=record["confidence"])
        with obs.metrics(model_version=record["model_version"], predicted_class=record["label"]) as metrics:
            metrics.add_metric(name="Confidence", unit=MetricUnit.NoUnit, value=record["confidence"])
        return state

    return handler


handler = lazy_entry_point(build)
