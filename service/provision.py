"""Create the stack's resources in the local engine (moto) with plain boto3 calls.

What it creates mirrors workflow/template.yaml: the data bucket with EventBridge notifications, the
review queue and the two dead-letter queues, the five functions with their environment, the state
machine from the ASL file, and the EventBridge rule whose target is the start function.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from scones.defaults import CONFIDENCE_THRESHOLD, QUEUE_RETENTION_S
from workflow.definitions import event_pattern, state_machine_definition
from workflow.names import FUNCTIONS, LAMBDA_RUNTIME, METRICS_NAMESPACE, FunctionSpec, StackNames

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def trust_policy(service: str) -> dict[str, Any]:
    """A role trust policy that lets `service` (e.g. lambda.amazonaws.com) assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def role_arn(name: str) -> str:
    """The local stack's ARN of the IAM role `name`."""
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"


@dataclass
class StackResources:
    """Identifiers of what was created: what the CLI prints and the tests use."""

    bucket: str
    review_queue_url: str
    dead_letter_queue_url: str
    event_dead_letter_queue_url: str
    state_machine_arn: str
    rule_name: str
    function_arns: dict[str, str] = field(default_factory=dict)


def _code_zip() -> bytes:
    """Lambda needs a deployment package; the local runtime runs the installed handlers instead."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Run in-process by service.moto_adapters.lambda_runtime.\n")
    return buffer.getvalue()


# The data bucket sends its events to EventBridge (the template's NotificationConfiguration).
BUCKET_NOTIFICATIONS: Final[dict[str, Any]] = {"EventBridgeConfiguration": {}}

# What only the local engine sets: its endpoints and dummy credentials, and tracing off (no X-Ray daemon).
LOCAL_ONLY_VARIABLES: Final = frozenset(
    {
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "POWERTOOLS_TRACE_DISABLED",
    }
)


def function_environment(
    spec: FunctionSpec,
    names: StackNames,
    *,
    aws_endpoint_url: str,
    sagemaker_runtime_url: str,
    threshold: float,
    state_machine_arn: str = "",
    review_queue_url: str = "",
    log_level: str = "INFO",
) -> dict[str, str]:
    """The environment of one function in the local engine (on AWS the template sets the same names)."""
    common = {
        "POWERTOOLS_SERVICE_NAME": spec.logical_id.removesuffix("Function").lower(),
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": log_level,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL": aws_endpoint_url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    specific = {
        "StartFunction": {"STATE_MACHINE_ARN": state_machine_arn},
        "ClassifyFunction": {
            "ENDPOINT_NAME": names.endpoint,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": sagemaker_runtime_url,
        },
        "FilterFunction": {"CONFIDENCE_THRESHOLD": str(threshold)},
        "RecordFunction": {"IDEMPOTENCY_TABLE": names.idempotency_table},
        "ReconcileFunction": {
            "STATE_MACHINE_ARN": state_machine_arn,
            "BUCKET_NAME": names.bucket,
            "REVIEW_QUEUE_URL": review_queue_url,
        },
    }
    return common | specific.get(spec.logical_id, {})


def provision(
    client: Callable[[str], Any],
    names: StackNames,
    *,
    aws_endpoint_url: str,
    sagemaker_runtime_url: str,
    threshold: float = CONFIDENCE_THRESHOLD,
    log_level: str = "INFO",
) -> StackResources:
    """Create every resource; `client(service)` returns a boto3 client for the local engine."""
    iam, s3, sqs = client("iam"), client("s3"), client("sqs")
    lambda_, sfn, events = client("lambda"), client("stepfunctions"), client("events")

    def create_role(name: str, service: str) -> dict[str, Any]:
        role: dict[str, Any] = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_policy(service))
        )
        return role

    lambda_role = create_role(f"{names.prefix}-lambda", "lambda.amazonaws.com")
    states_role = create_role(f"{names.prefix}-states", "states.amazonaws.com")
    create_role(names.sagemaker_role, "sagemaker.amazonaws.com")  # the template's SageMakerExecutionRole

    s3.create_bucket(Bucket=names.bucket)
    s3.put_bucket_notification_configuration(
        Bucket=names.bucket, NotificationConfiguration=BUCKET_NOTIFICATIONS
    )
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName=names.idempotency_table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=names.idempotency_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )
    queue_urls = {
        name: sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": str(QUEUE_RETENTION_S)})[
            "QueueUrl"
        ]
        for name in (names.review_queue, names.dead_letter_queue, names.event_dead_letter_queue)
    }

    def create_function(spec: FunctionSpec, environment: Mapping[str, str]) -> str:
        created = lambda_.create_function(
            FunctionName=names.function(spec),
            Runtime=LAMBDA_RUNTIME,
            Role=lambda_role["Role"]["Arn"],
            Handler=spec.handler,
            Code={"ZipFile": _code_zip()},
            Timeout=spec.timeout_s,
            MemorySize=spec.memory_mb,
            Environment={"Variables": dict(environment)},
        )
        arn: str = created["FunctionArn"]
        return arn

    def environment(spec: FunctionSpec, state_machine_arn: str = "") -> dict[str, str]:
        return function_environment(
            spec,
            names,
            aws_endpoint_url=aws_endpoint_url,
            sagemaker_runtime_url=sagemaker_runtime_url,
            threshold=threshold,
            state_machine_arn=state_machine_arn,
            review_queue_url=queue_urls[names.review_queue],
            log_level=log_level,
        )

    starters = {"StartFunction", "ReconcileFunction"}  # they need the state machine's ARN
    workflow_functions = [spec for spec in FUNCTIONS if spec.logical_id not in starters]
    arns = {spec.logical_id: create_function(spec, environment(spec)) for spec in workflow_functions}
    substitutions = {f"{logical_id}Arn": arn for logical_id, arn in arns.items()}
    substitutions |= {
        "Partition": "aws",
        "ReviewQueueUrl": queue_urls[names.review_queue],
        "DeadLetterQueueUrl": queue_urls[names.dead_letter_queue],
    }
    state_machine_arn: str = sfn.create_state_machine(
        name=names.state_machine,
        definition=state_machine_definition(substitutions),
        roleArn=states_role["Role"]["Arn"],
        type="STANDARD",
    )["stateMachineArn"]
    for spec in FUNCTIONS:
        if spec.logical_id in starters:
            arns[spec.logical_id] = create_function(spec, environment(spec, state_machine_arn))

    event_dlq_arn = sqs.get_queue_attributes(
        QueueUrl=queue_urls[names.event_dead_letter_queue], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    events.put_rule(Name=names.rule, EventPattern=json.dumps(event_pattern(names.bucket)), State="ENABLED")
    events.put_targets(
        Rule=names.rule,
        Targets=[
            {
                "Id": "start",
                "Arn": arns["StartFunction"],
                "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400},
                "DeadLetterConfig": {"Arn": event_dlq_arn},
            }
        ],
    )
    return StackResources(
        bucket=names.bucket,
        review_queue_url=queue_urls[names.review_queue],
        dead_letter_queue_url=queue_urls[names.dead_letter_queue],
        event_dead_letter_queue_url=queue_urls[names.event_dead_letter_queue],
        state_machine_arn=state_machine_arn,
        rule_name=names.rule,
        function_arns=arns,
    )
