"""The embedded local AWS endpoint: moto's server on 127.0.0.1 with every adapter installed.

`start_moto_server()` does, in this order:

1. sets moto's process-wide configuration (`moto.core.config.default_user_config`) before any
   resource exists: Step Functions really execute state machines, and Lambda uses the docker-free
   backend that `lambda_runtime` runs in-process. (moto reads the config when a backend is chosen,
   so resources created earlier would live in the other backend.)
2. sets `os.environ["MOTO_PORT"]`, once, to the server's port. moto's Step Functions interpreter
   calls the services its Task states use through a boto3 client at `http://localhost:$MOTO_PORT`,
   read when the client is made (`moto.settings.moto_server_port`). It is configuration of the one
   server in this process, like a config file, not per-invocation state: nothing swaps it later.
3. installs every adapter (`install_all`), then starts `ThreadedMotoServer` on a free port.

`stop()` stops the server, uninstalls the adapters (waiting for in-flight deliveries) and restores
the configuration, `MOTO_PORT` and the werkzeug log level it changed. moto's backends (the stored
buckets, queues, ...) are module-global and survive `stop()`, like any other moto server in the process.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self

from moto.core.config import default_user_config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from service.endpoint import free_port, port_in_use
from service.moto_adapters import (
    EndpointRegistry,
    HandlerFactory,
    InstalledAdapters,
    RetryPolicy,
    in_process_transport,
    install_all,
    refuse_a_second_installation,
    uninstall_all,
)

HOST: Final = "127.0.0.1"
REGION: Final = "us-east-1"
ACCOUNT_ID: Final = "123456789012"  # moto's default account
STACK_CONFIG: Final[dict[str, Any]] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
_BIND_ATTEMPTS: Final = 3


class PortUnavailable(OSError):
    """The server's port is taken (or not ours to bind)."""


def _unavailable(port: str, why: str) -> str:
    return (
        f"the local AWS stack could not listen on {HOST}:{port}{why}: is another `scones up` running?"
        " (--port picks another port, 0 any free one)"
    )


class _CheckedMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer whose `start()` reports a failure to bind.

    (werkzeug closes every connection after its response, so clients in other processes connect per
    request; those in the stack's process skip the socket: `in_process_transport`.)"""

    startup_error: BaseException | None = None

    def wsgi_app(self) -> Any:
        """The application the server runs (moto's DomainDispatcherApplication)."""
        return self._server.app  # type: ignore[union-attr]

    def _server_entry(self) -> None:
        try:
            self._server = make_server(
                self._ip_address,
                self._port,
                DomainDispatcherApplication(create_backend_app),
                threaded=True,
                request_handler=MotoRequestHandler,
            )
            self._server_ready_event.set()
            self._server.serve_forever()
        except BaseException as error:
            self.startup_error = error
            self._server_ready_event.set()


class LocalMotoServer:
    """A running moto server with the adapters installed; `stop()` (or leaving `with`) undoes everything."""

    def __init__(
        self,
        server: ThreadedMotoServer,
        adapters: InstalledAdapters,
        restore: dict[str, Any],
        previous_port: str | None,
        previous_log_level: int | None,
    ) -> None:
        self._server = server
        self.adapters = adapters
        host, port = server.get_host_and_port()
        self.host: str = host
        self.port: int = port
        self._restore = restore
        self._previous_port = previous_port
        self._previous_log_level = previous_log_level
        self._stopped = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Empty every moto backend (they are process-wide: what earlier servers of this process left)."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client for this server with explicit dummy credentials."""
        import boto3

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._server.stop()
        finally:
            uninstall_all(self.adapters)
            _restore_config(self._restore, self._previous_port, str(self.port), self._previous_log_level)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _restore_config(
    restore: Mapping[str, Any], previous_port: str | None, our_port: str, previous_log_level: int | None
) -> None:
    default_user_config.update(restore)  # type: ignore[typeddict-item]
    if os.environ.get("MOTO_PORT") == our_port:
        if previous_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = previous_port
    if previous_log_level is not None:
        logging.getLogger("werkzeug").setLevel(previous_log_level)


def start_moto_server(
    lambda_factories: Mapping[str, HandlerFactory] | None = None,
    *,
    sagemaker_endpoints: EndpointRegistry | Mapping[str, str] | None = None,
    event_retry: RetryPolicy | None = None,
    port: int | None = None,
    quiet: bool = True,
) -> LocalMotoServer:
    """Start moto on 127.0.0.1 (a free port unless `port` is given) with every adapter installed."""
    refuse_a_second_installation()  # before any of moto's settings are changed
    restore = {section: copy.deepcopy(default_user_config.get(section)) for section in STACK_CONFIG}
    default_user_config.update(copy.deepcopy(STACK_CONFIG))  # type: ignore[typeddict-item]
    previous_port = os.environ.get("MOTO_PORT")
    werkzeug = logging.getLogger("werkzeug")
    previous_log_level = werkzeug.level if quiet else None
    if quiet:
        werkzeug.setLevel(logging.WARNING)  # one access-log line per request otherwise
    adapters = install_all(lambda_factories, sagemaker_endpoints=sagemaker_endpoints, event_retry=event_retry)
    chosen = ""
    try:
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            chosen = str(port or free_port(HOST))
            if port and (taken := port_in_use(HOST, port)):  # before werkzeug tries it and prints its lines
                raise PortUnavailable(_unavailable(chosen, f" ({taken})"))
            os.environ["MOTO_PORT"] = chosen
            server = _CheckedMotoServer(ip_address=HOST, port=int(chosen), verbose=False)
            server.start()
            if server.startup_error is None:
                in_process_transport.install(HOST, int(chosen), server.wsgi_app())
                return LocalMotoServer(server, adapters, restore, previous_port, previous_log_level)
            if port is not None or attempt == _BIND_ATTEMPTS:
                why = "" if isinstance(server.startup_error, SystemExit) else f" ({server.startup_error})"
                # (werkzeug says why on stderr, then exits: SystemExit)
                raise PortUnavailable(_unavailable(chosen, why)) from server.startup_error
        raise AssertionError("unreachable")
    except BaseException:
        uninstall_all(adapters)
        _restore_config(restore, previous_port, chosen, previous_log_level)
        raise
