"""Lambda `serialize`: read the upload from S3, validate it, and hand on a 32x32 PNG thumbnail.

The original never enters the workflow state (Step Functions caps a state at 256 KB); invalid
uploads raise `ImageRejected` with a reason code, which the state machine records as a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.runtime import Event, LambdaHandler, MetricUnit, lazy_entry_point, observability
from handlers.settings import SerializeSettings


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from handlers.aws import S3ObjectStore, client
    from scones.preprocessing import ImageRejected, PreprocessConfig
    from scones.steps import serialize

    settings = SerializeSettings.from_environment(environment)
    obs = observability(settings)
    store = S3ObjectStore(client("s3", settings))
    config = PreprocessConfig(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)

    @obs.lambda_context
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        with obs.metrics() as metrics, obs.correlated(event):
            try:
                state = serialize(event, store, config)
            except ImageRejected as rejected:
                metrics.add_metric(name="ImagesRejected", unit=MetricUnit.Count, value=1)
                obs.logger.warning(
                    "upload rejected", extra={"reason": rejected.reason, "detail": rejected.detail}
                )
                raise
            metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=state["image"]["bytes"])
            metrics.add_metric(
                name="SerializeLatency", unit=MetricUnit.Milliseconds, value=state["timings_ms"]["serialize"]
            )
        return state

    return handler


handler = lazy_entry_point(build)
