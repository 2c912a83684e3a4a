"""Each function's IAM role in the AWS template allows every AWS call its code really makes.

moto does not enforce IAM, so a missing permission passes every other local test and fails only on
AWS (an `AccessDenied` where the code expects a result, or a 403 where it expects a 404). Here the
calls the functions make through the local stack (an accepted or review upload, a bad upload, an
upload deleted before it is read, its replay, the reconciler) are recorded per function, from the
Lambda runtime's invocation threads, and each one is checked against the policy statements AWS's SAM
translator gives that function's role.
"""

from __future__ import annotations

import fnmatch
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from handlers.aws import StepFunctionsStarter
from scones.objects import ObjectRef, execution_arn
from scones.steps import replay_run
from service.local_stack import LocalStack
from service.moto_adapters import sfn_lambda_invoke, task_clients
from service.outcome_watch import wait_for_outcomes
from service.replay import wait_for_executions
from service.sam_template import load_template, translate
from service.sample_uploads import encode, scene
from workflow.names import FUNCTIONS, StackNames

REGION = "us-east-1"
ACCOUNT = "123456789012"
MISSING = {"NoSuchKey", "404", "NotFound", "ExecutionDoesNotExist"}
STATE_MACHINE = "state machine"  # the caller of the workflow's service integrations


@dataclass(frozen=True)
class Call:
    function: str  # physical function name
    service: str
    operation: str
    params: dict[str, Any]
    error: str  # error code, "" when it succeeded


@dataclass(frozen=True)
class Access:
    action: str
    resource: str
    context: dict[str, str]  # condition keys of the request


def accesses(call: Call) -> list[Access]:
    """The IAM actions and resources AWS authorizes for one API call (only the operations we use)."""
    p, region_account = call.params, f"{REGION}:{ACCOUNT}"
    needed: list[Access] = []
    match call.service, call.operation:
        case "s3", "GetObject" | "HeadObject" | "PutObject" | "DeleteObject":
            verb: str = "GetObject" if call.operation == "HeadObject" else call.operation
            verb += "Version" if verb in ("GetObject", "DeleteObject") and p.get("VersionId") else ""
            needed.append(Access(f"s3:{verb}", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}", {}))
            if call.error in MISSING:  # S3 answers 404, not 403, only to who may list the bucket
                needed.append(Access("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", {}))
        case "s3", "ListObjectsV2" | "ListObjects" | "ListObjectVersions":
            context = {"s3:prefix": p.get("Prefix", "")}
            verb = "ListBucketVersions" if call.operation == "ListObjectVersions" else "ListBucket"
            needed.append(Access(f"s3:{verb}", f"arn:aws:s3:::{p['Bucket']}", context))
        case "dynamodb", operation:
            table = f"arn:aws:dynamodb:{region_account}:table/{p['TableName']}"
            needed.append(Access(f"dynamodb:{operation}", table, {}))
        case "sagemaker-runtime", "InvokeEndpoint":
            endpoint = f"arn:aws:sagemaker:{region_account}:endpoint/{p['EndpointName'].lower()}"
            needed.append(Access("sagemaker:InvokeEndpoint", endpoint, {}))
        case "sfn", "StartExecution":
            needed.append(Access("states:StartExecution", p["stateMachineArn"], {}))
        case "sfn", "DescribeExecution":
            needed.append(Access("states:DescribeExecution", p["executionArn"], {}))
        case "lambda", "Invoke":
            name = p["FunctionName"]
            arn = name if name.startswith("arn:") else f"arn:aws:lambda:{region_account}:function:{name}"
            needed.append(Access("lambda:InvokeFunction", arn, {}))
        case "sqs", "SendMessage":
            queue = p["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
            needed.append(Access("sqs:SendMessage", f"arn:aws:sqs:{region_account}:{queue}", {}))
    assert needed, f"{call.function} calls {call.service}.{call.operation}: map it to its IAM action"
    return needed


class Resolver:
    """CloudFormation intrinsics of the translated template, resolved to the local stack's names."""

    def __init__(self, stack: LocalStack, template: dict[str, Any]) -> None:
        names = StackNames()
        r = stack.resources
        queues = {
            "ReviewQueue": (names.review_queue, r.review_queue_url),
            "FailedQueue": (names.dead_letter_queue, r.dead_letter_queue_url),
            "UndeliveredEventsQueue": (names.event_dead_letter_queue, r.event_dead_letter_queue_url),
        }
        self.refs: dict[str, str] = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "DataBucket": r.bucket,
            "IdempotencyTable": names.idempotency_table,
            "ImageWorkflow": r.state_machine_arn,
            "EndpointName": names.endpoint,
        }
        self.attributes: dict[str, str] = {
            "DataBucket.Arn": f"arn:aws:s3:::{r.bucket}",
            "IdempotencyTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{names.idempotency_table}",
            "ImageWorkflow.Name": names.state_machine,
        }
        for logical_id, (name, url) in queues.items():
            self.refs[logical_id] = url
            self.attributes[f"{logical_id}.QueueName"] = name
            self.attributes[f"{logical_id}.Arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        for spec in FUNCTIONS:
            self.refs[spec.logical_id] = names.function(spec)
            self.attributes[f"{spec.logical_id}.Arn"] = r.function_arns.get(spec.logical_id, "")
        for name, parameter in template.get("Parameters", {}).items():
            self.refs.setdefault(name, str(parameter.get("Default", "")))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and (intrinsic := next(iter(value))) in self._INTRINSICS:
            return getattr(self, self._INTRINSICS[intrinsic])(value[intrinsic])
        return {key: self(item) for key, item in value.items()}

    _INTRINSICS: ClassVar[dict[str, str]] = {
        "Ref": "_ref",
        "Fn::GetAtt": "_get_att",
        "Fn::Sub": "_sub",
        "Fn::Join": "_join",
    }

    def _ref(self, name: str) -> str:
        return self.refs[name]

    def _get_att(self, target: list[str]) -> str:
        logical_id, attribute = target
        return self.attributes[f"{logical_id}.{attribute}"]

    def _sub(self, argument: str | list[Any]) -> str:
        text, variables = argument if isinstance(argument, list) else (argument, {})
        lookup = {**self.refs, **self.attributes, **{k: self(v) for k, v in variables.items()}}
        for name, replacement in lookup.items():
            text = text.replace("${" + name + "}", str(replacement))
        assert "${" not in text, f"unresolved: {text}"
        return str(text)

    def _join(self, argument: list[Any]) -> str:
        separator, parts = argument
        return str(separator).join(str(self(part)) for part in parts)


def role_statements(template: dict[str, Any], resolve: Resolver) -> dict[str, list[dict[str, Any]]]:
    """Function name (and STATE_MACHINE) → the Allow statements of its role's inline policies, resolved."""
    names = StackNames()
    statements: dict[str, list[dict[str, Any]]] = {}
    resources = template["Resources"]
    roles = {names.function(spec): resources[spec.logical_id]["Properties"]["Role"] for spec in FUNCTIONS}
    roles[STATE_MACHINE] = resources["ImageWorkflow"]["Properties"]["RoleArn"]
    for caller, role in roles.items():
        role_id = role["Fn::GetAtt"][0]
        found = []
        for policy in resources[role_id]["Properties"].get("Policies", []):
            for statement in resolve(policy["PolicyDocument"]["Statement"]):
                assert statement["Effect"] == "Allow"
                found.append(statement)
        statements[caller] = found
    return statements


def _listed(value: Any) -> list[str]:
    return [str(item) for item in (value if isinstance(value, list) else [value])]


def allows(statement: dict[str, Any], access: Access) -> bool:
    actions_match = any(
        fnmatch.fnmatchcase(access.action.lower(), a.lower()) for a in _listed(statement["Action"])
    )
    resources_match = any(fnmatch.fnmatchcase(access.resource, r) for r in _listed(statement["Resource"]))
    if not (actions_match and resources_match):
        return False
    for operator, tests in statement.get("Condition", {}).items():
        assert operator in {"StringLike", "StringEquals"}, f"unsupported condition {operator}"
        for key, patterns in tests.items():
            if key not in access.context:
                return False
            match = fnmatch.fnmatchcase if operator == "StringLike" else str.__eq__
            if not any(match(access.context[key], pattern) for pattern in _listed(patterns)):
                return False
    return True


@pytest.fixture
def recorded_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Call]]:
    """Every AWS call made on a Lambda invocation thread (named `lambda:<function>:<request>`), and
    those of the state machine's service integrations (the interpreter's task clients, and its Lambda
    calls that `sfn_lambda_invoke` makes without one)."""
    calls: list[Call] = []
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def recording(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        thread = threading.current_thread().name
        if any(self is client for client in task_clients.clients()):
            function = STATE_MACHINE
        elif thread.startswith("lambda:"):
            function = thread.split(":")[1]
        else:
            return original(self, operation, params)
        service = self.meta.service_model.endpoint_prefix
        service = {"states": "sfn", "runtime.sagemaker": "sagemaker-runtime"}.get(service, service)
        try:
            result = original(self, operation, params)
        except ClientError as error:
            calls.append(
                Call(function, service, operation, dict(params), str(error.response["Error"]["Code"]))
            )
            raise
        calls.append(Call(function, service, operation, dict(params), ""))
        return result

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    direct_invoke = sfn_lambda_invoke.direct_invoke

    def recording_direct(parameters: dict[str, Any], region: str) -> dict[str, Any] | None:
        response = direct_invoke(parameters, region)
        if response is not None:  # Lambda called without a client: the same Invoke, authorized the same
            calls.append(Call(STATE_MACHINE, "lambda", "Invoke", dict(parameters), ""))
        return response

    monkeypatch.setattr(sfn_lambda_invoke, "direct_invoke", recording_direct)
    yield calls


def _translated_template() -> dict[str, Any]:
    template = load_template()
    for resource in template["Resources"].values():  # as `aws cloudformation package` leaves them
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/code.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine":
            resource["Properties"]["DefinitionUri"] = {"Bucket": "artifacts", "Key": "definition.json"}
    return translate(template, region=REGION)


def test_every_call_a_function_makes_is_allowed_by_its_role(
    stack: LocalStack, recorded_calls: list[Call]
) -> None:
    s3, sfn = stack.client("s3"), stack.client("stepfunctions")
    bucket = stack.resources.bucket
    batch = f"inbox/iam-{uuid.uuid4().hex[:8]}"
    uploads = {f"{batch}/photo.png": encode(scene(), "PNG"), f"{batch}/garbage.png": b"not an image"}
    lam = stack.client("lambda")
    filter_function = StackNames().function(next(f for f in FUNCTIONS if f.logical_id == "FilterFunction"))
    variables = lam.get_function_configuration(FunctionName=filter_function)["Environment"]["Variables"]
    # every photo to review: the workflow's own queue message is among the calls
    lam.update_function_configuration(
        FunctionName=filter_function,
        Environment={"Variables": variables | {"CONFIDENCE_THRESHOLD": "1.0"}},
    )
    try:
        for key, body in uploads.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        first = wait_for_outcomes(s3, bucket, uploads, timeout_s=120, poll_s=0.1)
    finally:
        lam.update_function_configuration(FunctionName=filter_function, Environment={"Variables": variables})
    assert [first.records[key]["outcome"] for key in uploads] == ["review", "failed"]
    # an upload deleted before it is read (object_missing), then uploaded again and replayed
    gone = ObjectRef(bucket, f"{batch}/gone.png", "")
    body = encode(scene(size=(40, 40)), "PNG")
    staged = f"iam-staging/{uuid.uuid4().hex[:8]}.png"  # outside the inbox: no run of its own
    etag = s3.put_object(Bucket=bucket, Key=staged, Body=body)["ETag"].strip('"')
    gone = ObjectRef(bucket, gone.key, etag)
    sfn.start_execution(
        stateMachineArn=stack.resources.state_machine_arn,
        name=gone.execution_name(),
        input=json.dumps({"object": gone.as_dict(), "received_at": "2026-11-24T00:00:00.000Z"}),
    )
    index = wait_for_outcomes(s3, bucket, [*uploads, gone.key], timeout_s=120, poll_s=0.1)
    assert index.records[gone.key]["reason"] == "object_missing"
    # its run was started without a sequencer: the start function (DescribeExecution) cannot tell the
    # copy's event from a duplicate, and starts nothing; the replay does
    s3.copy_object(Bucket=bucket, Key=gone.key, CopySource={"Bucket": bucket, "Key": staged})
    name = replay_run(gone, StepFunctionsStarter(sfn, stack.resources.state_machine_arn))
    arn = execution_arn(stack.resources.state_machine_arn, name)
    assert wait_for_executions(sfn, [arn], timeout_s=120)[arn] == "SUCCEEDED"
    # an upload whose event never arrived (rule disabled): the reconciler looks up and starts its run
    events = stack.client("events")
    events.disable_rule(Name=stack.resources.rule_name)
    try:
        unseen = f"{batch}/unseen.png"
        s3.put_object(Bucket=bucket, Key=unseen, Body=encode(scene(size=(30, 30)), "PNG"))
    finally:
        events.enable_rule(Name=stack.resources.rule_name)
    answer = stack.client("lambda").invoke(
        FunctionName=StackNames().function(FUNCTIONS[-1]),
        Payload=json.dumps({"min_age_s": 0, "review_requeue_after_s": 0}).encode(),
    )
    assert unseen in json.loads(answer["Payload"].read())["started"]
    wait_for_outcomes(s3, bucket, [unseen], timeout_s=120, poll_s=0.1)

    statements = role_statements(_translated_template(), Resolver(stack, load_template()))
    functions = {call.function for call in recorded_calls}
    assert {
        "scones-start",
        "scones-serialize",
        "scones-classify",
        "scones-record",
        "scones-reconcile",
    } <= functions
    operations = {(call.function, call.operation, call.error in MISSING) for call in recorded_calls}
    assert ("scones-record", "GetObject", True) in operations  # a failure looks for the standing record
    assert ("scones-record", "DeleteObject", False) in operations  # the replay removes the failure record
    assert ("scones-reconcile", "DescribeExecution", True) in operations  # no run of that name yet
    assert ("scones-reconcile", "SendMessage", False) in operations  # the review item queued again
    assert ("scones-reconcile", "PutObject", False) in operations  # ... and when, in its marker
    assert ("scones-start", "DescribeExecution", False) in operations  # the re-put's runs looked up
    sent = {
        call.params["QueueUrl"]
        for call in recorded_calls
        if call.function == STATE_MACHINE and call.operation == "SendMessage"
    }
    assert sent == {stack.resources.review_queue_url, stack.resources.dead_letter_queue_url}
    assert (STATE_MACHINE, "Invoke", False) in operations
    denied = [
        f"{call.function}: {access.action} on {access.resource} {access.context or ''}".strip()
        for call in recorded_calls
        for access in accesses(call)
        if not any(allows(statement, access) for statement in statements[call.function])
    ]
    assert not denied, "\n".join(sorted(set(denied)))
