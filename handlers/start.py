"""Lambda `start`: the EventBridge rule's target. Starts one workflow run per object version.

The execution name is derived from bucket, key and etag/version, so a duplicate delivery of the
same event finds the run already there and starts nothing. Events that must start nothing
(other prefixes, folder markers) are logged and counted, never failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.runtime import Event, LambdaHandler, MetricUnit, lazy_entry_point, observability
from handlers.settings import StartSettings


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from handlers.aws import StepFunctionsStarter, client
    from scones.objects import NotAnUpload, object_from_event
    from scones.steps import start_run

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
            name, started = start_run(obj, starter)
            if started:
                metrics.add_metric(name="ImagesReceived", unit=MetricUnit.Count, value=1)
                obs.logger.info("workflow run started", extra={"execution_name": name})
            else:
                metrics.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
                obs.logger.info("duplicate delivery: run already exists", extra={"execution_name": name})
            obs.logger.thread_safe_remove_keys(["object_key", "etag"])
            return {"started": started, "execution_name": name}

    return handler


handler = lazy_entry_point(build)
