"""Lambda `record`: write the one outcome record of an upload under results/, review/ or failed/.

With `IDEMPOTENCY_TABLE` set (always, in the stack), powertools Idempotency keeps a retried
invocation for the same run and outcome from writing again: it answers with the first result.
"""

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
    record_once, idempotency = _idempotent(record_outcome, settings)

    @obs.logger.inject_lambda_context(clear_state=True)
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        if idempotency is not None:
            idempotency.register_lambda_context(context)
        with obs.correlated(event):
            state: dict[str, Any] = record_once(state=event, store=store)
            record = state["record"]
            obs.logger.info(
                "outcome recorded",
                extra={
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


def _idempotent(write: Any, settings: RecordSettings) -> tuple[Any, Any]:
    """`write(state=..., store=...)` made idempotent per object version, run and outcome kind."""
    if settings.idempotency_table is None:
        return write, None
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from handlers.aws import client

    persistence = DynamoDBPersistenceLayer(
        table_name=settings.idempotency_table, boto3_client=client("dynamodb", settings)
    )
    config = IdempotencyConfig(
        event_key_jmespath=(
            "[object.bucket, object.key, object.etag, object.version_id, execution_id, error.Error]"
        ),
        expires_after_seconds=settings.idempotency_ttl_s,
        raise_on_no_idempotency_key=True,
    )
    wrapped = idempotent_function(
        data_keyword_argument="state", persistence_store=persistence, config=config
    )(write)
    return wrapped, config


handler = lazy_entry_point(build)
