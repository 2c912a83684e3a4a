"""Step Functions' service integrations reuse their AWS clients, as the service does; moto made one per task.

moto's interpreter calls `boto_client_for(region, service, credentials)` for every Task state it runs
(Lambda invoke, SQS send, DynamoDB, ...), and each call builds a new boto3 client: tens of
milliseconds of service-model loading per state, most of a warm execution's time. `install()`
replaces the name in every interpreter module that imported it with a version that keeps one client
per (region, service, port) and talks to 127.0.0.1 directly (moto's `localhost` may resolve to ::1
first, where nothing listens). boto3 clients are thread-safe, so executions share them. moto 5.2.5
ignores the task's credentials argument, and so does the cache.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("task_clients")
# The interpreter modules that import `boto_client_for` by name (moto 5.2.5), loaded before patching.
_IMPORTERS = (
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sqs",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_dynamodb",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_unsupported",
)
_clients: dict[tuple[str, str, str], Any] = {}
_lock = threading.Lock()


def cached_client_for(original: Any) -> Any:
    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        from moto.settings import moto_server_port

        port = str(moto_server_port())
        key = (region, service, port)
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _rebased(original(region, service), f"http://127.0.0.1:{port}", region, service)
                _clients[key] = client
        return client

    return boto_client_for


def _rebased(client: Any, url: str, region: str, service: str) -> Any:
    """The same client configuration, pointed at 127.0.0.1 instead of localhost."""
    if "localhost" not in str(client.meta.endpoint_url):
        return client  # moto's in-process (mock_aws) mode: no endpoint to rebase
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service_name=service,
        region_name=region,
        aws_access_key_id="ak",
        aws_secret_access_key="sk",
        endpoint_url=url,
        config=client.meta.config,
    )


def install() -> None:
    """Replace `boto_client_for` wherever moto's Step Functions interpreter imported it."""
    from moto.stepfunctions.parser.asl.utils import boto_client

    uninstall()
    for module_name in _IMPORTERS:
        importlib.import_module(module_name)
    original = boto_client.boto_client_for
    replacement = cached_client_for(original)
    _patches.replace(boto_client, "boto_client_for", replacement)
    for name, module in list(sys.modules.items()):
        if (
            name.startswith("moto.stepfunctions.parser")
            and getattr(module, "boto_client_for", None) is original
        ):
            _patches.replace(module, "boto_client_for", replacement)


def uninstall() -> None:
    _patches.restore()
    with _lock:
        _clients.clear()


def is_installed() -> bool:
    return _patches.active


def clients() -> list[Any]:
    """The clients Step Functions' service integrations use now (each call of the workflow's own)."""
    with _lock:
        return list(_clients.values())
