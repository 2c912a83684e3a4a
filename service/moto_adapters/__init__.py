"""moto's gaps, closed for the embedded local AWS stack: one small adapter module per emulated AWS behaviour.

| module              | the AWS behaviour it emulates                                                  |
| ------------------- | ------------------------------------------------------------------------------ |
| `lambda_runtime`    | Lambda Invoke running our Python handlers in-process (timeouts, errors, logs)  |
| `event_delivery`    | EventBridge rules delivering to Lambda / Step Functions targets (retries, DLQ) |
| `s3_events`         | S3's EventBridge "Object Created" / "Object Deleted" events, shaped as AWS's    |
| `s3_atomic_writes`  | S3 object writes one at a time: a conditional write checks and writes at once  |
| `s3_read_consistency` | S3 GetObject returning a whole version (racing an overwrite, a delete, an ETag) |
| `emf_metrics`       | CloudWatch Logs extracting Embedded Metric Format lines into metrics           |
| `sfn_execution_names` | Step Functions StartExecution: one name starts one execution, even when raced  |
| `metric_percentiles` | CloudWatch GetMetricData answering percentiles (p50, p99, ...)                |
| `cfn_state_machine` | CloudFormation state machines from `DefinitionS3Location` + substitutions     |
| `sagemaker_update_endpoint` | SageMaker UpdateEndpoint (a promotion swapping the endpoint's config)  |
| `sagemaker_training` | SageMaker training jobs running their script-mode entry point locally     |
| `sagemaker_runtime` | SageMaker Runtime InvokeEndpoint, forwarded to a local model server            |
| `jsonpath_cache`    | (speed) Step Functions' JSONPath parsing, cached                               |
| `task_clients`      | (speed) Step Functions' service integrations reusing their AWS clients         |
| `asl_parse_cache`   | (speed) Step Functions parsing a definition once, not per execution            |
| `dispatch_cache`    | (speed) the server finding a request's service without listing its package     |
| `sfn_state_copies`  | (speed) Step Functions copying JSON state data without `copy.deepcopy`         |
| `response_timestamps` | (speed) the server writing timestamps without dateutil parsing each one      |
| `sfn_lambda_invoke` | (speed) Step Functions' Lambda tasks calling the Lambda backend, not a client  |
| `action_lookup_cache` | (speed) responses finding the action's method without listing their class   |
| `dynamodb_condition_lexing` | (speed) DynamoDB tokenizing a condition expression once per text       |
| `in_process_transport` | (speed) clients in the stack's process calling the server app without a socket |

Every adapter patches moto internals, so each module declares the `MOTO_VERSION` it was written and
tested against, and importing this package fails with `MotoVersionMismatch` when the installed moto
is a different version: re-verify the adapters (tests/integration/test_moto_adapters.py) before
moving the pin. Each module has `install(...)`/`uninstall()`; `install_all(...)` installs them all and
`uninstall_all()` undoes it. The patches are process-global: one embedded stack per process.
`service.moto_adapters.server.start_moto_server()` starts moto's server with everything installed.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

MOTO_VERSION = "5.2.5"


class MotoVersionMismatch(RuntimeError):
    """The installed moto is not the version the adapters were written against."""


def check_moto_version(expected: str = MOTO_VERSION) -> None:
    try:
        installed = importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        raise MotoVersionMismatch(
            f"moto is not installed; the local AWS stack needs moto[server]=={expected}"
        ) from None
    if installed != expected:
        raise MotoVersionMismatch(
            f"service.moto_adapters patches moto internals and was written against moto {expected}, "
            f"but moto {installed} is installed. Install moto[server]=={expected}, or re-verify every "
            f"adapter against {installed} (run tests/integration/test_moto_adapters.py) and update "
            "MOTO_VERSION in each module."
        )


check_moto_version()

from service.moto_adapters import (  # noqa: E402 - only after the version check
    action_lookup_cache,
    asl_parse_cache,
    cfn_state_machine,
    dispatch_cache,
    dynamodb_condition_lexing,
    emf_metrics,
    event_delivery,
    in_process_transport,
    jsonpath_cache,
    lambda_runtime,
    metric_percentiles,
    response_timestamps,
    s3_atomic_writes,
    s3_events,
    s3_read_consistency,
    sagemaker_runtime,
    sagemaker_training,
    sagemaker_update_endpoint,
    sfn_execution_names,
    sfn_lambda_invoke,
    sfn_state_copies,
    task_clients,
)
from service.moto_adapters.event_delivery import (  # noqa: E402
    EventTargetDelivery,
    ExecutionNamer,
    RetryPolicy,
    random_execution_name,
)
from service.moto_adapters.lambda_runtime import HandlerFactory, InProcessLambdaRuntime  # noqa: E402
from service.moto_adapters.sagemaker_runtime import EndpointRegistry  # noqa: E402

ADAPTERS = (
    action_lookup_cache,
    asl_parse_cache,
    dispatch_cache,
    dynamodb_condition_lexing,
    jsonpath_cache,
    task_clients,
    sfn_state_copies,
    sfn_lambda_invoke,
    response_timestamps,
    lambda_runtime,
    event_delivery,
    s3_events,
    s3_atomic_writes,
    s3_read_consistency,
    sfn_execution_names,
    sagemaker_runtime,
    emf_metrics,
    metric_percentiles,
    cfn_state_machine,
    sagemaker_update_endpoint,
    sagemaker_training,
    in_process_transport,
)

for _adapter in ADAPTERS:
    if _adapter.MOTO_VERSION != MOTO_VERSION:
        raise MotoVersionMismatch(
            f"{_adapter.__name__} was written against moto {_adapter.MOTO_VERSION}, "
            f"the package pins {MOTO_VERSION}"
        )


@dataclass(frozen=True)
class InstalledAdapters:
    """The live parts of an installation: register handlers or endpoints on them while the stack runs."""

    runtime: InProcessLambdaRuntime
    delivery: EventTargetDelivery
    endpoints: EndpointRegistry

    def uninstall(self) -> None:
        uninstall_all(self)


class AdaptersInUse(RuntimeError):
    """Another local stack's adapters are installed in this process (the patches are process-wide)."""


class _State:
    current: InstalledAdapters | None = None


_state = _State()


def install_all(
    lambda_factories: Mapping[str, HandlerFactory] | None = None,
    *,
    sagemaker_endpoints: EndpointRegistry | Mapping[str, str] | None = None,
    event_retry: RetryPolicy | None = None,
    execution_name: ExecutionNamer = random_execution_name,
    delivery_workers: int = 4,
    lambda_async_workers: int = 4,
    echo_lambda_output: bool = False,
    jsonpath_cache_size: int = 1024,
) -> InstalledAdapters:
    """Install every adapter and return its live parts; one installation per process at a time.

    A second one would take over the first stack's functions and deliveries (moto's backends and
    these patches are process-wide), and stopping either would strip the other: refused instead.
    """
    refuse_a_second_installation()
    _uninstall_modules()  # anything a failed or partial installation left behind
    runtime = InProcessLambdaRuntime(
        lambda_factories or {}, async_workers=lambda_async_workers, echo_output=echo_lambda_output
    )
    delivery = EventTargetDelivery(
        runtime, retry=event_retry, max_workers=delivery_workers, execution_name=execution_name
    )
    try:
        jsonpath_cache.install(jsonpath_cache_size)
        asl_parse_cache.install()
        dispatch_cache.install()
        task_clients.install()
        sfn_state_copies.install()
        sfn_lambda_invoke.install()
        response_timestamps.install()
        action_lookup_cache.install()
        dynamodb_condition_lexing.install()
        lambda_runtime.install(runtime)
        event_delivery.install(delivery)
        s3_events.install()
        s3_atomic_writes.install()
        s3_read_consistency.install()
        sfn_execution_names.install()
        metric_percentiles.install()
        cfn_state_machine.install()
        sagemaker_update_endpoint.install()
        sagemaker_training.install()
        endpoints = sagemaker_runtime.install(sagemaker_endpoints or {})
    except BaseException:
        _uninstall_modules()
        delivery.shutdown(wait=False)
        runtime.shutdown(wait=False)
        raise
    _state.current = InstalledAdapters(runtime, delivery, endpoints)
    return _state.current


def refuse_a_second_installation() -> None:
    """Raise AdaptersInUse when a local stack's adapters are installed in this process already."""
    if _state.current is not None:
        raise AdaptersInUse(
            "a local stack is already running in this process; stop it before starting another"
        )


def _uninstall_modules() -> None:
    for adapter in (
        in_process_transport,
        sagemaker_training,
        sagemaker_update_endpoint,
        cfn_state_machine,
        metric_percentiles,
        sagemaker_runtime,
        sfn_execution_names,
        s3_read_consistency,
        s3_atomic_writes,
        s3_events,
        event_delivery,
        lambda_runtime,
        dynamodb_condition_lexing,
        action_lookup_cache,
        response_timestamps,
        sfn_lambda_invoke,
        sfn_state_copies,
        task_clients,
        dispatch_cache,
        asl_parse_cache,
        jsonpath_cache,
    ):
        adapter.uninstall()


def uninstall_all(installation: InstalledAdapters | None = None) -> None:
    """Undo `install_all`: let running deliveries and invocations finish (queued ones are dropped),
    then restore moto. In that order: a running handler's AWS calls still reach moto in-process after
    the server stopped listening, instead of failing on a closed port. Given an `installation`, only
    that one is undone (nothing, if it is gone already)."""
    if installation is not None and _state.current is not installation:
        return
    installed, _state.current = _state.current, None
    if installed is not None:
        installed.delivery.shutdown(wait=True)
        installed.runtime.shutdown(wait=True)
    _uninstall_modules()


def current() -> InstalledAdapters | None:
    """The installation `install_all` made, if it is still installed."""
    return _state.current


@contextmanager
def adapters_installed(
    lambda_factories: Mapping[str, HandlerFactory] | None = None,
    *,
    sagemaker_endpoints: EndpointRegistry | Mapping[str, str] | None = None,
    event_retry: RetryPolicy | None = None,
) -> Iterator[InstalledAdapters]:
    """`install_all` for the duration of a `with` block."""
    installed = install_all(
        lambda_factories, sagemaker_endpoints=sagemaker_endpoints, event_retry=event_retry
    )
    try:
        yield installed
    finally:
        uninstall_all(installed)


__all__ = [
    "ADAPTERS",
    "MOTO_VERSION",
    "AdaptersInUse",
    "EndpointRegistry",
    "EventTargetDelivery",
    "HandlerFactory",
    "InProcessLambdaRuntime",
    "InstalledAdapters",
    "MotoVersionMismatch",
    "RetryPolicy",
    "adapters_installed",
    "check_moto_version",
    "current",
    "install_all",
    "refuse_a_second_installation",
    "uninstall_all",
]
