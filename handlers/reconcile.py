"""Lambda `reconcile`: on a schedule (and when the local stack starts), start the run of every inbox
object that has no outcome record (uploads whose event was lost or whose run was cut off), and put
review items still without a label back on the review queue before SQS would expire them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from handlers.runtime import Event, LambdaHandler, MetricUnit, lazy_entry_point, observability
from handlers.settings import ReconcileSettings


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from handlers.aws import S3ObjectStore, SqsQueue, StepFunctionsStarter, client
    from scones.objects import INBOX_PREFIX
    from scones.reconcile import reconcile
    from scones.review_requeue import requeue_unlabelled

    settings = ReconcileSettings.from_environment(environment)
    obs = observability(settings)
    lister = S3ObjectStore(client("s3", settings))
    review_queue = SqsQueue(client("sqs", settings), settings.review_queue_url)
    starter = StepFunctionsStarter(client("stepfunctions", settings), settings.state_machine_arn)

    @obs.lambda_context
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        given = event if isinstance(event, dict) else {}  # a manual invocation may set both ages
        min_age_s = float(given.get("min_age_s", settings.min_age_s))
        now = datetime.now(UTC)
        inbox = list(lister.list_current_versions(settings.bucket, INBOX_PREFIX))  # listed once for both
        report = reconcile(settings.bucket, lister, starter, now=now, min_age_s=min_age_s, inbox=inbox)
        requeue = requeue_unlabelled(
            settings.bucket,
            lister,
            lister,
            review_queue,
            now=now,
            requeue_after_s=float(given.get("review_requeue_after_s", settings.review_requeue_after_s)),
            inbox=inbox,
        )
        obs.logger.info(
            "reconciled",
            extra={
                "started": len(report.started),
                "already_running": len(report.already_running),
                "exhausted": report.exhausted,
                "too_young": report.too_young,
                "recorded": report.recorded,
                "review_items_requeued": len(requeue.requeued),
                "review_items_not_requeued": requeue.failed,
            },
        )
        with obs.metrics() as metrics:
            metrics.add_metric(name="UploadsReconciled", unit=MetricUnit.Count, value=len(report.started))
            # every replay name used and still no outcome: left to people, so an alarm says so
            metrics.add_metric(name="UploadsExhausted", unit=MetricUnit.Count, value=len(report.exhausted))
            metrics.add_metric(name="ReviewItemsRequeued", unit=MetricUnit.Count, value=len(requeue.requeued))
        return {
            "started": report.started,
            "already_running": report.already_running,
            "exhausted": report.exhausted,
            "too_young": report.too_young,
            "recorded": report.recorded,
            "review_items_requeued": requeue.requeued,
        }

    return handler


handler = lazy_entry_point(build)
