"""Lambda `record`: write the one outcome record of an upload under results/, review/ or failed/.

With `IDEMPOTENCY_TABLE` set (always, in the stack), powertools Idempotency keeps a retried
invocation for the same run and outcome from writing again: it answers with the first result.
The outcome counts (ImagesAccepted, ImagesSentToReview, ImagesFailed) are emitted here, once per
record written, so the metrics equal the records: a retry answered from the idempotency store, or a
failure that finds the result already recorded, writes nothing and counts nothing; a replay whose
result (or failure) replaces a failure record counts FailuresReplaced.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from handlers.runtime import Event, LambdaHandler, MetricUnit, Observability, lazy_entry_point, observability
from handlers.settings import RecordSettings
from workflow.names import FAILURES_REPLACED

OUTCOME_METRIC = {"accepted": "ImagesAccepted", "review": "ImagesSentToReview", "failed": "ImagesFailed"}


def build(environment: Mapping[str, str]) -> LambdaHandler:
    from handlers.aws import S3ObjectStore, client
    from scones.steps import record_outcome

    settings = RecordSettings.from_environment(environment)
    obs = observability(settings)
    store = S3ObjectStore(client("s3", settings))
    record_once, idempotency = _idempotent(record_outcome, settings)

    @obs.lambda_context
    @obs.tracer.capture_lambda_handler
    def handler(event: Event, context: Any) -> dict[str, Any]:
        if idempotency is not None:
            idempotency.register_lambda_context(context)
        written: list[dict[str, Any]] = []
        replaced: list[str] = []
        with obs.correlated(event):
            state: dict[str, Any] = record_once(
                state=event, store=store, on_written=written.append, on_failure_replaced=replaced.append
            )
            record = state["record"]
            obs.logger.info(
                "outcome recorded",
                extra={
                    "outcome": record["outcome"],
                    "record_key": record["record_key"],
                    "reason": record.get("reason"),
                },
            )
        for fresh in written:
            count_outcome(obs, fresh)
        for reason in replaced:  # the failure it counted is an outcome no more
            count(obs, FAILURES_REPLACED, {"reason": reason})
        return state

    return handler


def count_outcome(obs: Observability, record: Mapping[str, Any]) -> None:
    """One count of the outcome, alone and by failure reason or by model version and predicted class."""
    if record["outcome"] == "failed":
        breakdown = {"reason": str(record.get("reason", "unknown"))}
    else:
        breakdown = {"model_version": str(record["model_version"]), "predicted_class": str(record["label"])}
    count(obs, OUTCOME_METRIC[record["outcome"]], breakdown)


def count(obs: Observability, name: str, breakdown: Mapping[str, str]) -> None:
    """One count of `name`, alone and with the `breakdown` dimensions."""
    for dimensions in ({}, breakdown):
        with obs.metrics(**dimensions) as metrics:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


# One persistence layer per shared DynamoDB client: each layer built registers a User-Agent hook on
# its client, so a layer per cold start piled up hooks, run on every request, on the one client
# the process's environments share. A configured layer holds no per-request state (the config,
# which holds the Lambda context, stays one per handler).
_persistence_layers: dict[tuple[str, int, str, int], Any] = {}
_persistence_layers_lock = threading.Lock()


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

    config = IdempotencyConfig(
        event_key_jmespath=(
            "[object.bucket, object.key, object.etag, object.version_id, execution_id, error.Error]"
        ),
        expires_after_seconds=settings.idempotency_ttl_s,
        raise_on_no_idempotency_key=True,
    )
    dynamodb = client("dynamodb", settings)
    function_name = f"{write.__module__}.{write.__qualname__}"  # as powertools' handler names it
    # what the layer's `configure` fixes, for which function, and the client it registers on
    layer_key = (settings.idempotency_table, settings.idempotency_ttl_s, function_name, id(dynamodb))
    with _persistence_layers_lock:
        persistence = _persistence_layers.get(layer_key)
        if persistence is None:
            persistence = DynamoDBPersistenceLayer(
                table_name=settings.idempotency_table, boto3_client=dynamodb
            )
            # configured here, once, under the lock: `configure` marks a layer configured before it
            # sets its fields, so two first invocations racing could run on a half-configured one
            persistence.configure(config, function_name=function_name)
            _persistence_layers[layer_key] = persistence
    wrapped = idempotent_function(
        data_keyword_argument="state", persistence_store=persistence, config=config
    )(write)
    return wrapped, config


handler = lazy_entry_point(build)
