"""The SAM template, packaged by the real AWS CLI, translated by AWS's SAM translator and created in moto's
CloudFormation over loopback: the stack it makes is the one the local stack provisions (same ASL byte for
byte once substituted, same rule pattern, functions, handlers, environment and queues)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.moto_adapters.server import LocalMotoServer, start_moto_server
from service.provision import LOCAL_ONLY_VARIABLES, function_environment
from service.sagemaker_jobs import (
    SettingsError,
    data_bucket,
    endpoint_name,
    sagemaker_role,
    stack_actions,
    stack_value,
)
from service.sam_template import load_template, translate
from workflow.definitions import STATE_MACHINE_FILE, event_pattern, state_machine_definition
from workflow.names import FUNCTIONS, StackNames

ROOT = Path(__file__).parents[2]
# moto 5.2.5's CloudFormation has no S3 BucketPolicy, SQS QueuePolicy or CloudWatch Alarm: it skips them
# with this warning (tests/unit/test_template.py checks them in the template itself).
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS.*not supported by moto:UserWarning")
REGION = "us-east-1"
PARAMETERS = {"EndpointName": "scones-prod-classifier", "ConfidenceThreshold": "0.9", "LogLevel": "DEBUG"}


@dataclass(frozen=True)
class CreatedStack:
    aws: LocalMotoServer
    packaged: dict[str, Any]  # the SAM template as `aws cloudformation package` wrote it
    template: dict[str, Any]
    resources: dict[str, str]  # logical id -> physical id

    def client(self, service: str) -> Any:
        return self.aws.client(service)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CreatedStack]:
    work = tmp_path_factory.mktemp("deploy")
    (work / "workflow").mkdir()
    for name in ("template.yaml", "state_machine.asl.json"):
        shutil.copy(ROOT / "workflow" / name, work / "workflow" / name)
    (work / "build" / "lambda" / "handlers").mkdir(parents=True)  # what `make package` builds
    (work / "build" / "lambda" / "handlers" / "__init__.py").write_text("")
    with start_moto_server() as aws, pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }.items():
            env.setenv(name, value)
        aws.client("s3").create_bucket(Bucket="deploy-artifacts")
        package, _ = stack_actions(
            artifacts_bucket="deploy-artifacts",
            stack_name="scones",
            parameters=PARAMETERS,
            region=REGION,
            template=work / "workflow" / "template.yaml",
            packaged=work / "build" / "packaged.yaml",
        )
        package.run()
        packaged = load_template(work / "build" / "packaged.yaml")
        template = translate(packaged, region=REGION)
        cloudformation = aws.client("cloudformation")
        cloudformation.create_stack(
            StackName="scones",
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        summaries = cloudformation.list_stack_resources(StackName="scones")["StackResourceSummaries"]
        resources = {s["LogicalResourceId"]: s.get("PhysicalResourceId", "") for s in summaries}
        yield CreatedStack(aws, packaged, template, resources)
        cloudformation.delete_stack(StackName="scones")  # moto's state is the process's: other modules see it


def test_the_real_aws_cli_packaged_the_code_and_the_asl_file_to_s3(stack: CreatedStack) -> None:
    resources = stack.packaged["Resources"]
    code = {
        r["Properties"]["CodeUri"] for r in resources.values() if r["Type"] == "AWS::Serverless::Function"
    }
    assert len(code) == 1 and next(iter(code)).startswith("s3://deploy-artifacts/")
    bucket, key = next(iter(code)).removeprefix("s3://").split("/", 1)
    archive = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(archive)) as code_zip:
        names = set(code_zip.namelist())
    assert "handlers/__init__.py" in names, f"the functions' zip is not build/lambda: {sorted(names)[:5]}"
    definition = resources["ImageWorkflow"]["Properties"]["DefinitionUri"]
    stored = stack.client("s3").get_object(Bucket=definition["Bucket"], Key=definition["Key"])["Body"].read()
    assert stored == STATE_MACHINE_FILE.read_bytes(), "the ASL file, byte for byte"
    _, deploy = stack_actions(
        artifacts_bucket="deploy-artifacts", stack_name="scones", parameters=PARAMETERS, region=REGION
    )
    assert (
        "--parameter-overrides ConfidenceThreshold=0.9 EndpointName=scones-prod-classifier LogLevel=DEBUG"
        in deploy.name
    )


def test_aws_commands_without_endpoint_name_take_the_one_the_stacks_functions_call(
    stack: CreatedStack,
) -> None:
    """`scones deploy`/`destroy` and `retrain.py --on sagemaker` update the endpoint classify calls."""
    cloudformation = stack.client("cloudformation")
    assert endpoint_name(None, stack_name="scones", cloudformation=cloudformation) == "scones-prod-classifier"
    assert endpoint_name("mine", stack_name="scones", cloudformation=cloudformation) == "mine"
    assert endpoint_name(None, stack_name="new", cloudformation=cloudformation, deploying=True) == (
        StackNames().endpoint
    ), "a stack about to be deployed calls the default"
    with pytest.raises(SettingsError, match="no stack elsewhere to take the endpoint's name from"):
        endpoint_name(None, stack_name="elsewhere", cloudformation=cloudformation)


def test_the_stack_is_created(stack: CreatedStack) -> None:
    described = stack.client("cloudformation").describe_stacks(StackName="scones")["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    assert outputs["InboxUri"] == f"s3://{stack.resources['DataBucket']}/inbox/"


def test_aws_commands_without_bucket_take_the_deployed_stacks_bucket(stack: CreatedStack) -> None:
    """CloudFormation names the bucket: the CLI's AWS commands read it from the stack's outputs."""
    cloudformation = stack.client("cloudformation")
    found = data_bucket(None, endpoint_url=None, stack_name="scones", cloudformation=lambda: cloudformation)
    assert found == stack.resources["DataBucket"] != StackNames().bucket
    assert (
        data_bucket("mine", endpoint_url=None, stack_name="scones", cloudformation=lambda: cloudformation)
        == "mine"
    )
    local = data_bucket(None, endpoint_url="http://127.0.0.1:1", stack_name="x", cloudformation=lambda: None)
    assert local == StackNames().bucket, "the embedded stack's own bucket"
    with pytest.raises(SettingsError, match=r"DataBucketName.*give --bucket"):
        data_bucket(None, endpoint_url=None, stack_name="elsewhere", cloudformation=lambda: cloudformation)


def test_sagemaker_commands_without_role_take_the_stacks_sagemaker_role(stack: CreatedStack) -> None:
    """The template makes SageMaker's least-privilege role: `--role` defaults to its output on AWS and
    to the local stack's own role with an endpoint URL."""
    cloudformation = stack.client("cloudformation")
    found = sagemaker_role(
        None, endpoint_url=None, stack_name="scones", cloudformation=lambda: cloudformation
    )
    role = stack.client("iam").get_role(RoleName=found.rsplit("/", 1)[1])["Role"]
    assert role["Arn"] == found
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    given = sagemaker_role("arn:mine", endpoint_url=None, stack_name="scones", cloudformation=lambda: None)
    assert given == "arn:mine"
    local = sagemaker_role(
        None, endpoint_url="http://127.0.0.1:1", stack_name="x", cloudformation=lambda: None
    )
    assert local.endswith(f":role/{StackNames().sagemaker_role}")
    bucket = stack.resources["DataBucket"]
    assert found == sagemaker_role(
        None, buckets=[bucket], endpoint_url=None, stack_name="scones", cloudformation=lambda: cloudformation
    )
    with pytest.raises(SettingsError, match=rf"reaches only its own bucket {bucket}, not other-bucket"):
        sagemaker_role(
            None,
            buckets=[bucket, "other-bucket"],
            endpoint_url=None,
            stack_name="scones",
            cloudformation=lambda: cloudformation,
        )
    on_aws: dict[str, Any] = {
        "endpoint_url": None,
        "stack_name": "scones",
        "cloudformation": lambda: cloudformation,
    }
    model = f"s3://{bucket}/models/job-1/output/model.tar.gz"
    assert sagemaker_role(None, buckets=[bucket], model_data=model, **on_aws) == found
    with pytest.raises(SettingsError, match=r"not other-bucket: give --role"):
        sagemaker_role(None, buckets=[bucket], model_data="s3://other-bucket/models/m.tar.gz", **on_aws)
    with pytest.raises(
        SettingsError, match=rf"reads models under s3://{bucket}/models/ only.*or give --role"
    ):
        sagemaker_role(None, buckets=[bucket], model_data=f"s3://{bucket}/uploads/model.tar.gz", **on_aws)
    with pytest.raises(SettingsError, match=r"SageMakerRoleArn.*give --role"):
        sagemaker_role(None, endpoint_url=None, stack_name="elsewhere", cloudformation=lambda: cloudformation)


def test_review_and_replay_on_aws_take_their_queues_and_state_machine_from_the_stacks_outputs(
    stack: CreatedStack,
) -> None:
    """CloudFormation names the queues and the state machine: `scones review` and `scones replay`
    read them from the stack's outputs on AWS, not by the embedded stack's fixed names."""
    cloudformation = stack.client("cloudformation")
    sqs = stack.client("sqs")
    for output, logical_id in {
        "ReviewQueueUrl": "ReviewQueue",
        "FailedQueueUrl": "FailedQueue",
        "UndeliveredEventsQueueUrl": "UndeliveredEventsQueue",
        "StateMachineArn": "ImageWorkflow",
    }.items():
        found = stack_value(
            output,
            local=lambda: "the local stack's",
            endpoint_url=None,
            stack_name="scones",
            cloudformation=lambda: cloudformation,
        )
        assert found == stack.resources[logical_id], output
    review_queue = stack_value(
        "ReviewQueueUrl",
        local=str,
        endpoint_url=None,
        stack_name="scones",
        cloudformation=lambda: cloudformation,
    )
    assert sqs.get_queue_attributes(QueueUrl=review_queue, AttributeNames=["QueueArn"])["Attributes"]
    assert not review_queue.endswith("/" + StackNames().review_queue), "a name CloudFormation chose"
    with pytest.raises(SettingsError, match="has no NewerOutput output: it was deployed by an older"):
        stack_value(
            "NewerOutput",
            local=str,
            endpoint_url=None,
            stack_name="scones",
            cloudformation=lambda: cloudformation,
        )
    with pytest.raises(SettingsError, match=r"StateMachineArn.*give --stack-name"):
        stack_value(
            "StateMachineArn",
            local=str,
            endpoint_url=None,
            stack_name="elsewhere",
            cloudformation=lambda: cloudformation,
        )


def test_every_resource_but_the_ones_moto_lacks_is_created(stack: CreatedStack) -> None:
    created = {logical_id for logical_id in stack.resources if logical_id}  # moto lists skipped ones as ""
    skipped = {
        logical_id: resource["Type"]
        for logical_id, resource in stack.template["Resources"].items()
        if logical_id not in created
    }
    moto_lacks = {"AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::CloudWatch::Alarm"}
    assert set(skipped.values()) == moto_lacks, skipped


def test_the_state_machine_is_the_asl_file_with_the_stack_values_substituted(stack: CreatedStack) -> None:
    arns = {
        spec.logical_id: stack.client("lambda").get_function(FunctionName=stack.resources[spec.logical_id])[
            "Configuration"
        ]["FunctionArn"]
        for spec in FUNCTIONS
    }
    queue_url = stack.resources  # a queue's physical id is its URL
    expected = state_machine_definition(
        {f"{name}Arn": arn for name, arn in arns.items()}
        | {"ReviewQueueUrl": queue_url["ReviewQueue"], "DeadLetterQueueUrl": queue_url["FailedQueue"]}
        | {"Partition": "aws"}
    )
    created = stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.resources["ImageWorkflow"]
    )
    assert created["definition"] == expected
    # and independently of the substitution code: every Task names a real function or queue
    definition = json.loads(created["definition"])
    assert "${" not in created["definition"]
    tasks = [state for state in definition["States"].values() if state["Type"] == "Task"]
    function_arns = {
        task["Parameters"]["FunctionName"] for task in tasks if "FunctionName" in task["Parameters"]
    }
    queue_urls = {task["Parameters"]["QueueUrl"] for task in tasks if "QueueUrl" in task["Parameters"]}
    assert function_arns and function_arns <= set(arns.values())
    assert queue_urls == {queue_url["ReviewQueue"], queue_url["FailedQueue"]}
    assert {task["Resource"].split(":")[1] for task in tasks} == {"aws"}, "the stack's partition"


def test_functions_have_the_local_stacks_handlers_limits_and_environment(stack: CreatedStack) -> None:
    resolved = {
        "STATE_MACHINE_ARN": stack.resources["ImageWorkflow"],
        "BUCKET_NAME": stack.resources["DataBucket"],
        "IDEMPOTENCY_TABLE": stack.resources["IdempotencyTable"],
        "ENDPOINT_NAME": PARAMETERS["EndpointName"],
        "REVIEW_QUEUE_URL": stack.resources["ReviewQueue"],
    }
    for spec in FUNCTIONS:
        config = stack.client("lambda").get_function_configuration(
            FunctionName=stack.resources[spec.logical_id]
        )
        assert (config["Handler"], config["Timeout"], config["MemorySize"]) == (
            spec.handler,
            spec.timeout_s,
            spec.memory_mb,
        )
        local = function_environment(
            spec,
            StackNames(),
            aws_endpoint_url="http://127.0.0.1:1",
            sagemaker_runtime_url="http://127.0.0.1:2",
            threshold=float(PARAMETERS["ConfidenceThreshold"]),
            log_level=PARAMETERS["LogLevel"],
        )
        expected = {k: resolved.get(k, v) for k, v in local.items() if k not in LOCAL_ONLY_VARIABLES}
        # moto keeps a Number parameter's type in the environment; on AWS it becomes a string
        created = {name: str(value) for name, value in config["Environment"]["Variables"].items()}
        assert created == expected, spec.logical_id


def test_the_rule_sends_inbox_uploads_to_the_start_function(stack: CreatedStack) -> None:
    events = stack.client("events")
    rule = stack.resources["StartFunctionInboxObjectCreated"]
    pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
    assert pattern == event_pattern(stack.resources["DataBucket"])
    targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    start = stack.client("lambda").get_function(FunctionName=stack.resources["StartFunction"])
    assert [t["Arn"] for t in targets] == [start["Configuration"]["FunctionArn"]]


def test_the_queues_and_table_exist(stack: CreatedStack) -> None:
    sqs = stack.client("sqs")
    for logical_id in ("ReviewQueue", "FailedQueue", "UndeliveredEventsQueue"):
        attributes = sqs.get_queue_attributes(QueueUrl=stack.resources[logical_id], AttributeNames=["All"])
        assert attributes["Attributes"]["SqsManagedSseEnabled"] == "true", logical_id
    table = stack.client("dynamodb").describe_table(TableName=stack.resources["IdempotencyTable"])["Table"]
    assert {k["AttributeName"] for k in table["KeySchema"]} == {"id"}
