"""Lambda `classify`: send the thumbnail to the SageMaker endpoint and keep its probabilities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.runtime import Event, LambdaHandler, MetricUnit, lazy_entry_point, observability
from handlers.settings import ClassifySettings


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from handlers.aws import EndpointClassifier, client
    from scones.steps import EndpointThrottled, EndpointUnavailable, classify

    settings = ClassifySettings.from_environment(environment)
    obs = observability(settings)
    runtime = client(
        "sagemaker-runtime",
        settings,
        endpoint_url=settings.sagemaker_runtime_url,
        read_timeout=settings.endpoint_timeout_s,
        connect_timeout=min(settings.endpoint_timeout_s, 5.0),
        # two tries within the function's 30 s at the default 10 s timeout; the workflow's Retry
        # backs off between invocations (botocore's default would make 4 tries of 10 s: a timeout)
        retries={"mode": "standard", "total_max_attempts": 2},
    )
    classifier = EndpointClassifier(runtime, settings.endpoint_name)

    @obs.lambda_context
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        with obs.correlated(event):
            try:
                state = classify(event, classifier)
            except EndpointUnavailable as failed:
                # each failed attempt (the workflow retries it); a throttled one apart: a burst is no fault
                name = "EndpointThrottles" if isinstance(failed, EndpointThrottled) else "EndpointErrors"
                with obs.metrics() as metrics:
                    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
                raise
        latency_ms = state["timings_ms"]["classify"]
        with obs.metrics() as metrics:  # what the alarm and dashboard watch, whichever model serves
            metrics.add_metric(name="InferenceLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
        with obs.metrics(model_version=state["classification"]["model_version"]) as metrics:
            metrics.add_metric(name="InferenceLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
        return state

    return handler


handler = lazy_entry_point(build)
