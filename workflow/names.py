"""Resource names of the stack, defined once for the local stack and the SAM template's parity test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from scones.defaults import DEFAULT_ENDPOINT_NAME

METRICS_NAMESPACE: Final = "SconesUnlimited"
# counted by the record function when a replay's result replaces a failure record: `scones metrics`
# takes it off the failures (ImagesFailed itself, which the alarm watches, counts every failure)
FAILURES_REPLACED: Final = "FailuresReplaced"


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str  # the SAM resource id; the ASL placeholder is `${<logical_id>Arn}`
    handler: str  # module.attribute, as Lambda's Handler setting
    timeout_s: int
    memory_mb: int


DEFAULT_STACK_NAME: Final = "scones"  # the CloudFormation stack the AWS commands look for

# Lambda's Python: Amazon Linux 2023 (glibc 2.34), which takes the manylinux_2_28 wheels that
# constraints.txt pins (python3.11 runs on Amazon Linux 2: manylinux2014 only, older releases).
LAMBDA_RUNTIME: Final = "python3.12"

FUNCTIONS: Final = (
    FunctionSpec("StartFunction", "handlers.start.handler", 10, 256),
    FunctionSpec("SerializeFunction", "handlers.serialize.handler", 30, 1024),
    FunctionSpec("ClassifyFunction", "handlers.classify.handler", 30, 256),
    FunctionSpec("FilterFunction", "handlers.filter.handler", 10, 256),
    FunctionSpec("RecordFunction", "handlers.record.handler", 10, 256),
    FunctionSpec("ReconcileFunction", "handlers.reconcile.handler", 300, 256),
)


@dataclass(frozen=True)
class StackNames:
    """Physical names for one stack; `prefix` keeps several stacks apart in one account."""

    prefix: str = "scones"

    @property
    def bucket(self) -> str:
        return f"{self.prefix}-data"

    @property
    def state_machine(self) -> str:
        return f"{self.prefix}-image-workflow"

    @property
    def rule(self) -> str:
        return f"{self.prefix}-inbox-object-created"

    @property
    def review_queue(self) -> str:
        return f"{self.prefix}-review"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-failed"

    @property
    def event_dead_letter_queue(self) -> str:
        return f"{self.prefix}-undelivered-events"

    @property
    def idempotency_table(self) -> str:
        return f"{self.prefix}-idempotency"

    @property
    def endpoint(self) -> str:
        return DEFAULT_ENDPOINT_NAME

    @property
    def sagemaker_role(self) -> str:
        return f"{self.prefix}-sagemaker"

    def function(self, spec: FunctionSpec) -> str:
        return f"{self.prefix}-{spec.logical_id.removesuffix('Function').lower()}"
