"""SageMaker UpdateEndpoint: point an existing endpoint at another endpoint config, as a promotion does.

moto 5.2.5 implements CreateEndpoint, DescribeEndpoint and DeleteEndpoint but not UpdateEndpoint
(its server answers "not yet implemented"). On AWS
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html) the endpoint
keeps its name and ARN, goes `Updating` and then `InService` on the new config's production variants
and data capture, and the old config is left in place. moto's endpoints are `InService` at once, so
the update is too. An unknown endpoint or config is a `ValidationException`, as on AWS.
"""

from __future__ import annotations

from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("sagemaker_update_endpoint")


def update_endpoint(backend: Any, endpoint_name: str, endpoint_config_name: str) -> Any:
    """Swap `endpoint_name`'s config in moto's SageMaker backend; returns the endpoint."""
    from moto.core.utils import utcnow
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpoint

    endpoint = backend.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
        raise ValidationError(message=f"Could not find endpoint '{arn}'.")
    try:
        config = backend.describe_endpoint_config(endpoint_config_name)
    except KeyError:
        raise ValidationError(
            message=f"Could not find endpoint configuration '{endpoint_config_name}'."
        ) from None
    endpoint.endpoint_config_name = endpoint_config_name
    endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
    endpoint.data_capture_config = config["DataCaptureConfig"]
    endpoint.last_modified_time = utcnow()
    return endpoint


def install() -> None:
    from moto.sagemaker.responses import SageMakerResponse

    uninstall()

    def update_endpoint_action(self: Any) -> str:
        import json

        endpoint = update_endpoint(
            self.sagemaker_backend, self._get_param("EndpointName"), self._get_param("EndpointConfigName")
        )
        return json.dumps({"EndpointArn": endpoint.arn})

    _patches.replace(SageMakerResponse, "update_endpoint", update_endpoint_action, adding=True)


def uninstall() -> None:
    _patches.restore()


def installed() -> bool:
    return _patches.active
