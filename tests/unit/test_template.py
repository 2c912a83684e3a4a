"""The SAM template: cfn-lint clean, least privilege, encrypted and private storage, and the same
functions, state machine and event pattern as the local stack (one definition of each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflow.definitions import placeholders
from workflow.names import FUNCTIONS, LAMBDA_RUNTIME

ROOT = Path(__file__).parents[2]
WORKFLOW = ROOT / "workflow"
TEMPLATE = WORKFLOW / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short intrinsic tags: `!Ref x` loads as `{"Ref": x}`."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CloudFormationLoader)
    return loaded


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_passes() -> None:
    from cfnlint.api import lint_file

    assert [str(match) for match in lint_file(TEMPLATE)] == []


def allow_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        for policy in function["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                found.append((name, statement))
    return found


def test_function_policies_name_actions_and_scope_resources(template: dict[str, Any]) -> None:
    statements = allow_statements(template)
    assert statements, "the functions' inline policies"
    for name, statement in statements:
        assert statement["Effect"] == "Allow", name
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), (name, actions)
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        assert all(resource != "*" for resource in resources), (name, resources)


def test_s3_access_is_scoped_to_the_prefixes_each_function_uses(template: dict[str, Any]) -> None:
    scopes: dict[str, set[str]] = {}
    for name, statement in allow_statements(template):
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            if (
                isinstance(resource, dict)
                and "Fn::Sub" in resource
                and "DataBucket.Arn" in resource["Fn::Sub"]
            ):
                scopes.setdefault(name, set()).add(resource["Fn::Sub"].split("}", 1)[1])
    assert scopes == {
        "SerializeFunction": {"/inbox/*"},
        "RecordFunction": {"/results/*", "/review/*", "/failed/*"},
        "ReconcileFunction": {"/review/*", "/requeue/*"},  # an unlabelled review item queued again
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _bucket_patterns(statement: dict[str, Any]) -> list[str]:
    """The key patterns of a statement's `${DataBucket.Arn}/...` resources."""
    return [
        resource["Fn::Sub"].split("}/", 1)[1]
        for resource in _as_list(statement["Resource"])
        if isinstance(resource, dict) and "${DataBucket.Arn}/" in resource.get("Fn::Sub", "")
    ]


def test_the_sagemaker_role_reaches_the_keys_its_jobs_and_endpoint_use_and_no_others(
    template: dict[str, Any],
) -> None:
    from fnmatch import fnmatchcase

    from service.sagemaker_jobs import (
        SageMakerSettings,
        endpoint_config_request,
        retrain_channel_prefix,
        train_actions,
        training_job_request,
    )

    role = template["Resources"]["SageMakerExecutionRole"]["Properties"]
    (principal,) = [s["Principal"]["Service"] for s in role["AssumeRolePolicyDocument"]["Statement"]]
    assert principal == "sagemaker.amazonaws.com"
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    by_action: dict[str, list[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert "*" not in action, action
            by_action.setdefault(action, []).extend(_bucket_patterns(statement))
        if statement["Resource"] == "*":  # only actions without resource-level permissions
            assert _as_list(statement["Action"]) in (
                ["ecr:GetAuthorizationToken"],
                ["cloudwatch:PutMetricData"],
            )

    settings = SageMakerSettings(role_arn="role", bucket="bucket", serving_image="image")
    source_uri = train_actions(None, None, settings, {}, "job")[0].name
    job = training_job_request(settings, "job", source_uri, {})
    channels = [channel["DataSource"]["S3DataSource"]["S3Uri"] for channel in job["InputDataConfig"]]
    model = job["OutputDataConfig"]["S3OutputPath"] + "job/output/model.tar.gz"
    capture = endpoint_config_request(settings, "config", "model", "endpoint")["DataCaptureConfig"]
    retrain_channel = "s3://bucket/" + retrain_channel_prefix("job", "train")
    reads = [uri + "a.png" for uri in [*channels, retrain_channel]] + [source_uri, model]
    writes = [model, capture["DestinationS3Uri"] + "/endpoint/AllTraffic/2026/11/25/12/a.jsonl"]

    def key(uri: str) -> str:
        assert uri.startswith("s3://bucket/"), uri
        return uri.removeprefix("s3://bucket/")

    for action, uris in (("s3:GetObject", reads), ("s3:PutObject", writes)):
        patterns = by_action[action]
        for uri in uris:
            assert any(fnmatchcase(key(uri), pattern) for pattern in patterns), (action, uri)
        for pattern in patterns:  # each one in use: nothing wider than the code needs
            assert any(fnmatchcase(key(uri), pattern) for uri in uris), (action, pattern)
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    listed = listing["Condition"]["StringLike"]["s3:prefix"]
    for channel in [*channels, retrain_channel]:
        assert any(fnmatchcase(key(channel), prefix) for prefix in listed), channel
    assert set(by_action) - {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} == {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:GetAuthorizationToken",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
        "cloudwatch:PutMetricData",
    }
    assert "SageMakerRoleArn" in template["Outputs"]


def test_the_sagemaker_role_pulls_the_training_container_the_jobs_name(template: dict[str, Any]) -> None:
    from service.sagemaker_jobs import DLC_ACCOUNTS, pytorch_training_image

    role = template["Resources"]["SageMakerExecutionRole"]["Properties"]
    (pull,) = [
        statement
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement.get("Sid") == "PullImages"
    ]
    repositories = [resource["Fn::Sub"] for resource in pull["Resource"]]
    for region in DLC_ACCOUNTS:
        registry, _, path = pytorch_training_image(region).partition("/")
        account, repository = registry.split(".")[0], path.split(":")[0]
        expected = f"arn:${{AWS::Partition}}:ecr:${{AWS::Region}}:{account}:repository/{repository}"
        assert expected in repositories, region
    assert "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*" in repositories


def test_managed_policy_templates_are_scoped_to_one_resource(template: dict[str, Any]) -> None:
    for kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
        for name, resource in resources_of(template, kind).items():
            for policy in resource["Properties"].get("Policies", []):
                if "Statement" in policy:
                    continue
                ((policy_name, parameters),) = policy.items()
                assert parameters and all(value != "*" for value in parameters.values()), (name, policy_name)


def test_the_bucket_is_private_encrypted_and_refuses_plain_http(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["DataBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    (deny,) = template["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_queues_and_table_are_encrypted(template: dict[str, Any]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    assert len(queues) == 3 and all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())
    table = template["Resources"]["IdempotencyTable"]["Properties"]
    assert table["SSESpecification"]["SSEEnabled"] is True


def test_functions_match_the_local_stack_definitions(template: dict[str, Any]) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    assert set(functions) == {spec.logical_id for spec in FUNCTIONS}
    for spec in FUNCTIONS:
        properties = functions[spec.logical_id]["Properties"]
        assert (properties["Handler"], properties["Timeout"], properties["MemorySize"]) == (
            spec.handler,
            spec.timeout_s,
            spec.memory_mb,
        )
    assert "IDEMPOTENCY_TABLE" in functions["RecordFunction"]["Properties"]["Environment"]["Variables"]
    assert "CONFIDENCE_THRESHOLD" in functions["FilterFunction"]["Properties"]["Environment"]["Variables"]
    assert template["Globals"]["Function"]["Runtime"] == LAMBDA_RUNTIME


def test_the_lambda_package_is_built_for_the_functions_python_at_the_tested_versions() -> None:
    """`make package` installs wheels for the runtime's Python (Amazon Linux 2023 takes manylinux_2_28),
    constrained to the versions the tests ran with: no other Pillow makes the thumbnails on AWS."""
    makefile = (ROOT / "Makefile").read_text()
    assert f"LAMBDA_PYTHON := {LAMBDA_RUNTIME.removeprefix('python')}" in makefile
    package = makefile.split("\npackage:", 1)[1].split("\n\n", 1)[0]
    assert "--python-version $(LAMBDA_PYTHON)" in package and "-c constraints.txt" in package
    assert "--platform manylinux_2_28_x86_64" in package


def test_the_state_machine_is_the_asl_file_with_every_placeholder_substituted(
    template: dict[str, Any],
) -> None:
    machine = template["Resources"]["ImageWorkflow"]["Properties"]
    assert machine["DefinitionUri"] == "state_machine.asl.json"
    asl = (WORKFLOW / "state_machine.asl.json").read_text()
    assert set(machine["DefinitionSubstitutions"]) == placeholders(asl)


def test_the_rule_pattern_is_the_event_pattern_file(template: dict[str, Any]) -> None:
    rule = template["Resources"]["StartFunction"]["Properties"]["Events"]["InboxObjectCreated"]["Properties"]
    pattern = json.loads((WORKFLOW / "event_pattern.json").read_text())
    pattern["detail"]["bucket"]["name"] = [{"Ref": "DataBucket"}]
    assert rule["Pattern"] == pattern


def test_events_that_cannot_start_a_run_reach_the_undelivered_events_queue(template: dict[str, Any]) -> None:
    """Two ways an event is lost on AWS: EventBridge gives up invoking the start function (the rule's
    dead-letter queue, which EventBridge may write only if the queue's policy lets it), or the
    asynchronous invocation fails after Lambda's retries (the function's dead-letter queue)."""

    def get_att(value: dict[str, Any]) -> list[str]:
        target = value["Fn::GetAtt"]
        return target.split(".") if isinstance(target, str) else list(target)

    queue_arn = ["UndeliveredEventsQueue", "Arn"]
    start = template["Resources"]["StartFunction"]["Properties"]
    assert (
        get_att(start["Events"]["InboxObjectCreated"]["Properties"]["DeadLetterConfig"]["Arn"]) == queue_arn
    )
    assert (
        start["DeadLetterQueue"]["Type"] == "SQS"
        and get_att(start["DeadLetterQueue"]["TargetArn"]) == queue_arn
    )
    policy = template["Resources"]["UndeliveredEventsQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "UndeliveredEventsQueue"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and get_att(statement["Resource"]) == queue_arn
    # SAM names the rule it makes from the function and the event: the condition must name that rule
    rule = get_att(statement["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert rule == ["StartFunction" + "InboxObjectCreated", "Arn"]


def test_alarms_watch_low_confidence_failures_dead_letters_and_latency(template: dict[str, Any]) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    watched = set()
    for alarm in alarms.values():
        properties = alarm["Properties"]
        names = [properties.get("MetricName")] + [
            query["MetricStat"]["Metric"]["MetricName"]
            for query in properties.get("Metrics", [])
            if "MetricStat" in query
        ]
        watched |= {name for name in names if name}
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert {
        "ImagesSentToReview",
        "ImagesFailed",
        "ApproximateNumberOfMessagesVisible",
        "InferenceLatency",
        "UploadsExhausted",
        "EndpointErrors",
        "ApproximateAgeOfOldestMessage",
    } <= watched
    # the reconciler is the last net under lost runs: its failing must not go unnoticed
    reconciler = [
        alarm["Properties"]
        for alarm in alarms.values()
        if alarm["Properties"].get("Dimensions")
        == [{"Name": "FunctionName", "Value": {"Ref": "ReconcileFunction"}}]
    ]
    assert [(p["Namespace"], p["MetricName"], p["Threshold"]) for p in reconciler] == [
        ("AWS/Lambda", "Errors", 0)
    ]


def test_the_dashboard_body_is_json_with_the_four_views(template: dict[str, Any]) -> None:
    import re

    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    filled = re.sub(r"\$\{ConfidenceThreshold\}", "0.85", body)
    filled = re.sub(r"\$\{[A-Za-z.:]+\}", "x", filled)
    widgets = json.loads(filled)["widgets"]
    titles = [widget["properties"]["title"] for widget in widgets]
    assert titles == [
        "Outcomes",
        "Confidence of recent inferences",
        "Inference latency (ms)",
        "Queues: waiting for review, failed (DLQ), undelivered events",
    ]
    assert widgets[1]["properties"]["annotations"]["horizontal"][0]["value"] == 0.85


def test_each_function_gets_the_same_environment_as_in_the_local_stack(template: dict[str, Any]) -> None:
    from service.provision import LOCAL_ONLY_VARIABLES, function_environment
    from workflow.names import StackNames

    shared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for spec in FUNCTIONS:
        local = function_environment(
            spec,
            StackNames(),
            aws_endpoint_url="http://127.0.0.1:1",
            sagemaker_runtime_url="http://127.0.0.1:2",
            threshold=0.85,
        )
        variables = template["Resources"][spec.logical_id]["Properties"]["Environment"]["Variables"]
        assert set(variables) | shared == set(local) - LOCAL_ONLY_VARIABLES, spec.logical_id
        assert variables["POWERTOOLS_SERVICE_NAME"] == local["POWERTOOLS_SERVICE_NAME"]


def test_queues_and_table_are_the_ones_the_local_stack_creates(template: dict[str, Any]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    assert set(queues) == {"ReviewQueue", "FailedQueue", "UndeliveredEventsQueue"}
    from scones.defaults import QUEUE_RETENTION_S, REVIEW_REQUEUE_AFTER_S

    assert {queue["Properties"]["MessageRetentionPeriod"] for queue in queues.values()} == {QUEUE_RETENTION_S}
    assert REVIEW_REQUEUE_AFTER_S < QUEUE_RETENTION_S - 86400, "a day's room for the hourly resend"
    machine = template["Resources"]["ImageWorkflow"]["Properties"]["DefinitionSubstitutions"]
    assert machine["ReviewQueueUrl"] == {"Ref": "ReviewQueue"} and machine["DeadLetterQueueUrl"] == {
        "Ref": "FailedQueue"
    }
    rule = template["Resources"]["StartFunction"]["Properties"]["Events"]["InboxObjectCreated"]["Properties"]
    assert rule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": "UndeliveredEventsQueue.Arn"}}


def test_every_lambda_step_but_the_failure_path_retries_throttling_and_timeouts() -> None:
    """Every step is idempotent (pure, read-only, or a record keyed by the object version), so a
    timed-out or throttled invocation is retried; only the failure path then records it."""
    states = json.loads((WORKFLOW / "state_machine.asl.json").read_text())["States"]
    lambda_steps = {
        name: state
        for name, state in states.items()
        if state.get("Resource") == "arn:${Partition}:states:::lambda:invoke" and name != "RecordFailure"
    }
    assert set(lambda_steps) == {"Serialize", "Classify", "Filter", "RecordResult"}
    for name, state in lambda_steps.items():
        retried = {error for rule in state["Retry"] for error in rule["ErrorEquals"]}
        assert {"Sandbox.Timedout", "Lambda.TooManyRequestsException", "Lambda.Unknown"} <= retried, name
        assert state["Catch"][0]["Next"] == "RecordFailure", name
    for name in [*lambda_steps, "RecordFailure"]:
        # throttling (a burst past the account's concurrency) waits minutes, not the seconds a
        # passing service error gets: its own retrier, first, so the others do not catch it
        throttled = states[name]["Retry"][0]
        endpoint_throttling = ["EndpointThrottled"] if name == "Classify" else []  # SageMaker's, too
        assert throttled["ErrorEquals"] == ["Lambda.TooManyRequestsException", *endpoint_throttling], name
        waits = [
            min(throttled["IntervalSeconds"] * throttled["BackoffRate"] ** n, throttled["MaxDelaySeconds"])
            for n in range(throttled["MaxAttempts"])
        ]
        assert sum(waits) >= 180, (name, waits)


def test_parameter_defaults_are_the_local_stack_defaults(template: dict[str, Any]) -> None:
    from scones.defaults import CONFIDENCE_THRESHOLD, DEFAULT_ENDPOINT_NAME

    parameters = template["Parameters"]
    assert parameters["EndpointName"]["Default"] == DEFAULT_ENDPOINT_NAME
    assert float(parameters["ConfidenceThreshold"]["Default"]) == CONFIDENCE_THRESHOLD


def test_every_metric_namespace_in_the_template_is_the_one_the_functions_publish_to() -> None:
    """The alarms, the dashboard and the functions' environment name the namespace as a literal each."""
    import re

    from workflow.names import METRICS_NAMESPACE

    text = TEMPLATE.read_text()
    named = set(re.findall(r"Namespace: (\S+)", text)) - {"AWS/SQS", "AWS/States", "AWS/Lambda"}
    in_dashboard = set(re.findall(r'\["([A-Za-z]+)", "[A-Za-z]+", "service"', text))
    published = set(re.findall(r"POWERTOOLS_METRICS_NAMESPACE: (\S+)", text))
    assert named == in_dashboard == published == {METRICS_NAMESPACE}, (named, in_dashboard, published)


def test_every_function_has_its_log_group_with_a_retention(template: dict[str, Any]) -> None:
    """Lambda makes `/aws/lambda/<function>` keeping every line for ever unless the stack makes it."""
    groups = resources_of(template, "AWS::Logs::LogGroup")
    functions = resources_of(template, "AWS::Serverless::Function")
    for spec in FUNCTIONS:
        group = functions[spec.logical_id]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        properties = groups[group]["Properties"]
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
        # not Lambda's own name: a function that has run has that group already, and a stack
        # update making it again would fail
        assert not properties["LogGroupName"]["Fn::Sub"].startswith("/aws/lambda/")
    assert len(groups) == len(FUNCTIONS)


def test_the_bucket_expires_what_only_grows_and_keeps_its_policy(template: dict[str, Any]) -> None:
    rules = {
        rule["Id"]: rule
        for rule in template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7
    capture = rules["ExpireDataCapture"]
    assert (capture["Prefix"], capture["ExpirationInDays"]) == (
        "datacapture/",
        {"Ref": "DataCaptureRetentionInDays"},
    )
    assert not any(
        rule.get("Prefix", "").startswith(("inbox/", "results/", "review/", "failed/", "label"))
        for rule in rules.values()
    )
    from scones.defaults import REVIEW_REQUEUE_AFTER_S
    from scones.review_requeue import REQUEUED_PREFIX

    markers = rules["ExpireReviewRequeueMarkers"]
    assert markers["Prefix"] == REQUEUED_PREFIX
    assert markers["ExpirationInDays"] * 86400 > 2 * REVIEW_REQUEUE_AFTER_S, (
        "a waiting item's marker never expires"
    )
    policy = template["Resources"]["DataBucketPolicy"]
    assert policy["DeletionPolicy"] == policy["UpdateReplacePolicy"] == "Retain", (
        "kept with the retained bucket"
    )


def test_the_local_stacks_log_levels_are_the_templates(template: dict[str, Any]) -> None:
    from service.cli import LOG_LEVELS

    assert tuple(template["Parameters"]["LogLevel"]["AllowedValues"]) == LOG_LEVELS
