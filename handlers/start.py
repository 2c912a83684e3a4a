"""Lambda `start`: the EventBridge rule's target. Starts one workflow run per object version.

The execution name is derived from bucket, key and etag/version, so a duplicate delivery of the
same event finds the run already there and starts nothing. The same bytes put again under the key
(a new S3 `sequencer`) after their run failed are the uploader's retry: a replay starts. Events that
must start nothing (other prefixes, folder markers) are logged and counted, never failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from handlers.runtime import Event, LambdaHandler, MetricUnit, lazy_entry_point, observability
from handlers.settings import StartSettings

if TYPE_CHECKING:
    from scones.steps import UploadStart


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from handlers.aws import StepFunctionsStarter, client
    from scones.objects import NotAnUpload, object_from_event
    from scones.steps import UPLOAD_START_MESSAGES, start_upload

    settings = StartSettings.from_environment(environment)
    obs = observability(settings)
    starter = StepFunctionsStarter(client("stepfunctions", settings), settings.state_machine_arn)

    @obs.lambda_context
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        with obs.metrics() as metrics:
            try:
                obj = object_from_event(event)
            except NotAnUpload as ignored:
                obs.logger.info(
                    "event starts nothing", extra={"reason": str(ignored), "event_id": event.get("id")}
                )
                metrics.add_metric(name="EventsIgnored", unit=MetricUnit.Count, value=1)
                return {"started": False, "reason": str(ignored)}
            obs.logger.thread_safe_append_keys(object_key=obj.key, etag=obj.etag)
            name, what = start_upload(obj, starter)
            metrics.add_metric(name=START_METRICS[what], unit=MetricUnit.Count, value=1)
            obs.logger.info(UPLOAD_START_MESSAGES[what], extra={"execution_name": name})
            obs.logger.thread_safe_remove_keys(["object_key", "etag"])
            return {"started": what in ("started", "retried"), "execution_name": name, "outcome": what}

    return handler


# what start_upload did → the metric it counts in, and the log line
START_METRICS: Final[dict[UploadStart, str]] = {
    "started": "ImagesReceived",
    "retried": "UploadsRetried",
    "duplicate": "DuplicateDeliveries",
    "running": "RepeatedUploads",  # the same bytes put again: the outcome of their run stands
    "recorded": "RepeatedUploads",
    "exhausted": "UploadsExhausted",  # as the reconciler's: left to people (its alarm: the reconciler's)
}

handler = lazy_entry_point(build)
