"""CloudFormation state machines from `DefinitionS3Location` and `DefinitionSubstitutions`, as AWS makes them.

moto's `StateMachine.create_from_cloudformation_json` reads only `DefinitionString` and ignores
`DefinitionSubstitutions`, so the stack that `sam deploy` / `aws cloudformation package` produce
(the definition uploaded to S3, `${...}` placeholders filled by CloudFormation) would create an empty
state machine in moto; and it creates it in moto's plain Step Functions backend, while the API (with
`execute_state_machine` on, as the local stack runs) serves the parser backend, so the machine is
invisible. The replacement does what CloudFormation does
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-stepfunctions-statemachine.html):
read the definition from `DefinitionS3Location` (Bucket, Key, optional Version) in the account's S3
when there is no `DefinitionString`, then replace every `${Name}` from `DefinitionSubstitutions`
(values already resolved by moto's template parser), then create, update or delete the machine in the
backend the Step Functions API serves.
"""

from __future__ import annotations

import json
from typing import Any

from service.moto_adapters._patching import PatchSet
from workflow.definitions import substitute

MOTO_VERSION = "5.2.5"

_patches = PatchSet("cfn_state_machine")


def resolved_definition(properties: dict[str, Any], account_id: str) -> str:
    """The definition text CloudFormation would create: from S3 or inline, placeholders filled."""
    definition = properties.get("DefinitionString")
    if definition is None and "Definition" in properties:
        definition = json.dumps(properties["Definition"])
    if definition is None and "DefinitionS3Location" in properties:
        from moto.s3.models import s3_backends

        location = properties["DefinitionS3Location"]
        stored = s3_backends[account_id]["aws"].get_object(
            location["Bucket"], location["Key"], version_id=location.get("Version")
        )
        if stored is None:
            raise ValueError(
                f"DefinitionS3Location s3://{location['Bucket']}/{location['Key']} does not exist"
            )
        definition = stored.value.decode()
    substitutions = {
        name: str(value) for name, value in properties.get("DefinitionSubstitutions", {}).items()
    }
    return substitute(definition or "", substitutions)


def install() -> None:
    from moto.stepfunctions.models import StateMachine
    from moto.stepfunctions.responses import get_backend
    from moto.stepfunctions.utils import cfn_to_api_tags

    uninstall()

    def create_from_cloudformation_json(
        resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **_: Any
    ) -> Any:
        properties = cloudformation_json.get("Properties", {})
        return get_backend(account_id, region_name).create_state_machine(
            properties.get("StateMachineName", resource_name),
            resolved_definition(properties, account_id),
            properties.get("RoleArn", ""),
            tags=cfn_to_api_tags(properties.get("Tags", [])),
        )

    def update_from_cloudformation_json(
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        properties = cloudformation_json.get("Properties", {})
        if properties.get("StateMachineName", original_resource.name) != original_resource.name:
            created = create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )
            get_backend(account_id, region_name).delete_state_machine(original_resource.arn)
            return created
        return get_backend(account_id, region_name).update_state_machine(
            original_resource.arn,
            definition=resolved_definition(properties, account_id),
            role_arn=properties.get("RoleArn"),
        )

    def delete_from_cloudformation_json(
        resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        get_backend(account_id, region_name).delete_state_machine(resource_name)

    for name, replacement in (
        ("create_from_cloudformation_json", create_from_cloudformation_json),
        ("update_from_cloudformation_json", update_from_cloudformation_json),
        ("delete_from_cloudformation_json", delete_from_cloudformation_json),
    ):
        _patches.replace(StateMachine, name, staticmethod(replacement))


def uninstall() -> None:
    _patches.restore()


def installed() -> bool:
    return _patches.active
