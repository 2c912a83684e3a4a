"""What every handler module shares: powertools observability from settings, and the lazy entry point.

A handler module defines `build(environment) -> handler`; its `handler` (the Lambda entry point)
builds once from os.environ on the first call. The local engine calls `build` with each function's
own environment instead, so no process-wide state is swapped between functions.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from handlers.settings import FunctionSettings

Event = dict[str, Any]
LambdaHandler = Callable[[Event, Any], Any]
Builder = Callable[[Mapping[str, str]], LambdaHandler]

__all__ = ["Event", "LambdaHandler", "MetricUnit", "Observability", "lazy_entry_point", "observability"]


@dataclass(frozen=True)
class Observability:
    logger: Logger
    tracer: Tracer
    settings: FunctionSettings

    @contextlib.contextmanager
    def metrics(self, **dimensions: str) -> Iterator[EphemeralMetrics]:
        """Metrics of one invocation, flushed as one EMF line when the block ends (even on error)."""
        metrics = EphemeralMetrics(namespace=self.settings.metrics_namespace, service=self.settings.service)
        for name, value in dimensions.items():
            metrics.add_dimension(name=name, value=value)
        try:
            yield metrics
        finally:
            if metrics.metric_set:  # a block that counted nothing (it failed first) prints nothing
                metrics.flush_metrics()

    def lambda_context(self, handler: LambdaHandler) -> LambdaHandler:
        """powertools' `inject_lambda_context`, safe for concurrent environments of one function.

        powertools keeps one formatter per service name per process, so its decorator's keys of one
        invocation overwrite another's when the local engine runs several at once (request ids
        crossed on about half the lines); here they are the invocation's own (thread-safe keys), and
        `cold_start` is this environment's first invocation, not the process's.
        """
        invocations = itertools.count()

        @functools.wraps(handler)
        def decorate(event: Event, context: Any) -> Any:
            keys = build_lambda_context_model(context).__dict__
            self.logger.thread_safe_append_keys(cold_start=next(invocations) == 0, **keys)
            try:
                return handler(event, context)
            finally:
                self.logger.thread_safe_clear_keys()

        return decorate

    @contextlib.contextmanager
    def correlated(self, event: Event) -> Iterator[None]:
        """The step's object key and execution on every log line of the invocation; a failure is
        logged with them before it leaves the function (the workflow's Catch decides what follows)."""
        upload = event.get("object") or {}
        self.logger.thread_safe_append_keys(
            object_key=upload.get("key"), execution_id=event.get("execution_id")
        )
        try:
            yield
        except Exception as error:
            self.logger.warning(
                "step failed", extra={"error_type": type(error).__name__, "error": str(error)}
            )
            raise
        finally:
            self.logger.thread_safe_remove_keys(["object_key", "execution_id"])


def observability(settings: FunctionSettings) -> Observability:
    """Structured JSON logs, X-Ray tracing (off in the local engine) and metrics for one function."""
    logger = Logger(service=settings.service, level=settings.log_level)
    logger.setLevel(settings.log_level)  # a second Logger of a service keeps the first one's level
    tracer = Tracer(service=settings.service, disabled=settings.tracing_disabled, auto_patch=False)
    if not settings.tracing_disabled:  # on AWS: S3, SageMaker, DynamoDB, ... calls as X-Ray subsegments
        tracer.patch(["boto3", "botocore"])
    return Observability(logger=logger, tracer=tracer, settings=settings)


def lazy_entry_point(build: Builder) -> LambdaHandler:
    """The module-level `handler`: built from os.environ on first use (imports stay fast)."""
    built: list[LambdaHandler] = []

    def handler(event: Event, context: Any) -> Any:
        if not built:
            built.append(build(os.environ))
        return built[0](event, context)

    return handler
