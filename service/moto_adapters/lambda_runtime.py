"""Lambda's Invoke API, run in-process: moto's docker-free Lambda backend executes our Python handlers.

moto's `LambdaSimpleBackend.invoke` (the backend used with `{"lambda": {"use_docker": False}}`)
echoes the payload back without running anything. `install(runtime)` replaces it so an invocation
runs the function's handler in this process, the way the Lambda service would run it:

- the handler comes from a `HandlerFactory` registered under the function's `Handler` string
  (e.g. "handlers.serialize.handler"); the factory receives the function's environment as a plain
  dict (its `Environment.Variables` plus the variables Lambda itself sets, such as `AWS_REGION`)
  and returns the handler. `os.environ` is never touched: invocations run concurrently on moto's
  request threads, so each function gets its own handler built from its own environment.
- built handlers are kept like Lambda's warm execution environments, per (function ARN, handler,
  environment hash, code SHA-256): an environment serves one invocation at a time, so a concurrent
  invocation builds another one (a cold start, as Lambda scales out) and handler state is never
  shared by two running invocations; a configuration or code update builds new ones; an
  environment whose invocation timed out is discarded.
- the handler gets a context with the attributes powertools reads (`function_name`,
  `aws_request_id`, `get_remaining_time_in_millis()`, ...).
- the function's `Timeout` is enforced: the handler runs on its own thread and, when it overruns,
  the caller gets `Sandbox.Timedout` with `X-Amz-Function-Error: Unhandled` (the thread cannot be
  killed; it finishes in the background and its output is discarded, as a frozen sandbox's is).
  What it would still send is refused: from the timeout on, every AWS request the invocation's
  thread makes through botocore raises `SandboxFrozen` before it leaves, so a late write (an outcome
  record, a queue message) cannot land after Step Functions has moved on, as on AWS, where the
  sandbox is frozen at the timeout.
- an exception becomes Lambda's error document (`errorMessage`, `errorType`, `requestId`,
  `stackTrace`) with `X-Amz-Function-Error: Unhandled`; a factory failure or an unknown handler
  string is `Runtime.ImportModuleError`, an unserializable result `Runtime.MarshalError`.
- `X-Amz-Invocation-Type: Event` runs the invocation on a bounded background pool and answers 202
  at once; `DryRun` answers 204; `X-Amz-Log-Type: Tail` returns the last 4 KB of the log.
- everything the invocation thread writes to `sys.stdout`/`sys.stderr` is captured (threads the
  handler starts itself are not), written to CloudWatch Logs group `/aws/lambda/<name>` between
  Lambda's START/END/REPORT lines, and scanned for Embedded Metric Format lines, which become
  CloudWatch metrics (`emf_metrics`), as CloudWatch Logs does in AWS.

Capturing works through a proxy over `sys.stdout`/`sys.stderr`: writes from a thread that is running
an invocation go to that invocation's buffer, writes from every other thread pass through unchanged.
The proxy is installed by `install()` and re-checked at the start of every invocation, because test
runners (pytest's capture) swap `sys.stdout` between tests. Handlers whose loggers were created
before the proxy existed hold the old stream and are not captured: build loggers in the factory.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

from aws_lambda_powertools.utilities.typing import LambdaContext
from moto.core.exceptions import JsonRESTError

from service.moto_adapters import emf_metrics
from service.moto_adapters._patching import PatchSet

if TYPE_CHECKING:
    from moto.awslambda.models import LambdaFunction

MOTO_VERSION = "5.2.5"

HandlerFunction = Callable[[dict[str, Any], LambdaContext], Any]
HandlerFactory = Callable[[Mapping[str, str]], HandlerFunction]
_EnvironmentKey = tuple[str, str, str, str, int]  # function ARN, handler, env digest, code SHA, generation

UNHANDLED: Final = "Unhandled"
LOG_TAIL_BYTES: Final = 4096
_log = logging.getLogger(__name__)
_patches = PatchSet("lambda_runtime")


class _State:
    installed: InProcessLambdaRuntime | None = None


_state = _State()


# ---------------------------------------------------------------------------------------------
# Output capture


class _Capture(threading.local):
    buffer: io.StringIO | None = None
    echo: bool = False
    frozen: threading.Event | None = None  # set when this thread's invocation timed out


class SandboxFrozen(RuntimeError):
    """An AWS request from an invocation that already timed out: Lambda froze its sandbox."""


def refuse_if_frozen(request: Any) -> None:
    """Raise `SandboxFrozen` when the calling thread's invocation has timed out."""
    frozen = _capture.frozen
    if frozen is not None and frozen.is_set():
        raise SandboxFrozen(f"the invocation timed out; not sending {request.method} {request.url}")


_capture = _Capture()
_proxy_lock = threading.Lock()


class _InvocationRoutedStream:
    """A `sys.stdout`/`sys.stderr` stand-in: invocation threads write to their buffer, others pass through."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        buffer = _capture.buffer
        if buffer is None:
            return self.inner.write(text)
        buffer.write(text)
        if _capture.echo:
            _innermost(self.inner).write(text)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _capture.buffer is None or _capture.echo:
            self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _innermost(stream: TextIO) -> TextIO:
    while isinstance(stream, _InvocationRoutedStream):
        stream = stream.inner
    return stream


def install_stream_proxies() -> None:
    """Put the routing proxy over `sys.stdout` and `sys.stderr` unless it is already there."""
    with _proxy_lock:
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if not isinstance(current, _InvocationRoutedStream):
                setattr(sys, name, cast(TextIO, _InvocationRoutedStream(current)))


def remove_stream_proxies() -> None:
    with _proxy_lock:
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if isinstance(current, _InvocationRoutedStream):
                setattr(sys, name, current.inner)


# ---------------------------------------------------------------------------------------------
# Context and results


class InjectedFault(RuntimeError):
    """What a handler raises when a test or benchmark asked for a failure (`fail_next`)."""


class InvocationContext(LambdaContext):
    """The context object a Python handler receives (the subset of attributes the runtime sets)."""

    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        aws_request_id: str,
        log_group_name: str,
        log_stream_name: str,
        deadline: float,
    ) -> None:
        self._function_name = function_name
        self._function_version = function_version
        self._invoked_function_arn = invoked_function_arn
        self._memory_limit_in_mb = memory_limit_in_mb
        self._aws_request_id = aws_request_id
        self._log_group_name = log_group_name
        self._log_stream_name = log_stream_name
        self._deadline = deadline  # time.monotonic() at which the invocation times out

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    @classmethod
    def direct(cls, function_name: str, *, timeout_s: float = 30.0) -> InvocationContext:
        """A context for calling a handler directly (tests, benchmarks): no stack behind it."""
        return cls(
            function_name=function_name,
            function_version="$LATEST",
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}",
            memory_limit_in_mb=256,
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{function_name}",
            log_stream_name=f"{dt.datetime.now(dt.UTC):%Y/%m/%d}/[$LATEST]direct",
            deadline=time.monotonic() + timeout_s,
        )


@dataclass(frozen=True)
class InvocationResult:
    """What Invoke returns: the payload, `function_error` ("Unhandled" or None) and the invocation's log."""

    request_id: str
    payload: bytes
    function_error: str | None
    log: str
    duration_ms: float

    @property
    def error(self) -> dict[str, Any] | None:
        """The error document when the invocation failed."""
        if self.function_error is None:
            return None
        document: dict[str, Any] = json.loads(self.payload)
        return document


class InvalidRequestContent(JsonRESTError):
    """Lambda's 400 for a payload that is not JSON."""

    code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(
            "InvalidRequestContentException", f"Could not parse request body into json: {detail}"
        )


@dataclass
class _Outcome:
    value: Any = None
    error: dict[str, Any] | None = None
    error_log: str = ""


def _error_document(request_id: str, error: BaseException) -> tuple[dict[str, Any], str]:
    """Lambda's Python error shape, and the `[ERROR]` block the runtime writes to the log."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename != __file__]
    if isinstance(error, SystemExit):
        document: dict[str, Any] = {
            "errorMessage": (
                f"RequestId: {request_id} Error: Runtime exited with error: exit status {error.code}"
            ),
            "errorType": "Runtime.ExitError",
        }
        return document, f"[ERROR] {document['errorType']}: {document['errorMessage']}"
    document = {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }
    log = f"[ERROR] {type(error).__name__}: {error}\nTraceback (most recent call last):\n" + "".join(
        traceback.format_list(frames)
    )
    return document, log


def _header(headers: Any, name: str) -> str | None:
    """A request header by case-insensitive name (werkzeug's headers or a plain dict)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if str(key).lower() == lowered:
                return str(candidate)
        return None
    return str(value)


def function_environment(function: LambdaFunction) -> dict[str, str]:
    """The environment Lambda gives the function's process: its variables, then Lambda's reserved ones."""
    runtime = str(function.run_time or "python3.11")
    reserved = {
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(function.version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": function.logs_group_name,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
        "_HANDLER": str(function.handler or ""),
    }
    variables = {str(key): str(value) for key, value in (function.environment_vars or {}).items()}
    return {**variables, **reserved}  # Lambda refuses to let a function override its reserved variables


# ---------------------------------------------------------------------------------------------
# The runtime


class InProcessLambdaRuntime:
    """Runs Lambda functions' handlers in this process; see the module docstring for the contract."""

    def __init__(
        self,
        factories: Mapping[str, HandlerFactory],
        *,
        async_workers: int = 4,
        max_idle_environments: int = 8,
        echo_output: bool = False,
        publish_logs: bool = True,
        publish_metrics: bool = True,
    ) -> None:
        self._factories = dict(factories)
        self._idle: dict[_EnvironmentKey, list[HandlerFunction]] = {}
        self._generation: dict[str, int] = {}
        self._max_idle = max_idle_environments
        self._lock = threading.Lock()
        self._builds = 0
        self._echo = echo_output
        self._publish_logs = publish_logs
        self._publish_metrics = publish_metrics
        self._async = ThreadPoolExecutor(max_workers=async_workers, thread_name_prefix="lambda-async")
        self._injected_failures: dict[str, int] = {}

    # fault injection ------------------------------------------------------------------------

    def fail_next(self, function_name: str, count: int = 1) -> None:
        """The function's next `count` invocations raise `InjectedFault` in the handler's place."""
        with self._lock:
            self._injected_failures[function_name] = count

    def _take_injected_failure(self, function_name: str) -> bool:
        with self._lock:
            left = self._injected_failures.get(function_name, 0)
            if left <= 0:
                return False
            self._injected_failures[function_name] = left - 1
            return True

    # registry -------------------------------------------------------------------------------

    def register(self, handler: str, factory: HandlerFactory) -> None:
        """Add or replace a handler string's factory; handlers the old one built are dropped."""
        with self._lock:
            self._factories[handler] = factory
            self._generation[handler] = self._generation.get(handler, 0) + 1
            for key in [key for key in self._idle if key[1] == handler]:
                del self._idle[key]

    def handles(self, handler: str) -> bool:
        return handler in self._factories

    @property
    def builds(self) -> int:
        """How many handlers the factories have built (a cold start each)."""
        return self._builds

    def _checkout(
        self, function: LambdaFunction, environment: dict[str, str]
    ) -> tuple[_EnvironmentKey, HandlerFunction]:
        """An idle warm environment's handler for this function, or a newly built one."""
        handler_name = str(function.handler or "")
        digest = hashlib.sha256(json.dumps(environment, sort_keys=True).encode()).hexdigest()
        with self._lock:
            key: _EnvironmentKey = (
                function.function_arn,
                handler_name,
                digest,
                str(function.code_sha_256),
                self._generation.get(handler_name, 0),
            )
            idle = self._idle.get(key)
            if idle:
                return key, idle.pop()
            factory = self._factories.get(handler_name)
            for stale in [k for k in self._idle if k[0] == key[0] and k != key]:
                del self._idle[stale]  # the function's configuration or code changed
        module = handler_name.rpartition(".")[0] or handler_name
        if factory is None:
            known = ", ".join(sorted(self._factories)) or "none"
            raise ImportError(
                f"Unable to import module '{module}': no in-process handler is registered for "
                f"'{handler_name}' (registered: {known})"
            )
        try:
            built = factory(dict(environment))
        except Exception as error:
            raise ImportError(f"Unable to import module '{module}': {error}") from error
        with self._lock:
            self._builds += 1
        return key, built

    def _checkin(self, key: _EnvironmentKey, handler: HandlerFunction) -> None:
        with self._lock:
            if key[4] != self._generation.get(key[1], 0):
                return  # the handler string's factory was replaced meanwhile
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._max_idle:
                idle.append(handler)

    # invocation -----------------------------------------------------------------------------

    def invoke(self, function: LambdaFunction, payload: bytes | str | None = None) -> InvocationResult:
        """One synchronous (RequestResponse) invocation."""
        event = _parse_payload(payload)
        return self._run(function, event)

    def invoke_async(
        self, function: LambdaFunction, payload: bytes | str | None = None
    ) -> Future[InvocationResult]:
        """One Event invocation: queued on the background pool."""
        event = _parse_payload(payload)
        return self._async.submit(self._run_logged, function, event)

    def _run_logged(self, function: LambdaFunction, event: Any) -> InvocationResult:
        result = self._run(function, event)
        if result.function_error is not None:
            _log.warning(
                "async invocation %s of %s failed: %s",
                result.request_id,
                function.function_name,
                result.payload[:500].decode(errors="replace"),
            )
        return result

    def _run(self, function: LambdaFunction, event: Any) -> InvocationResult:
        install_stream_proxies()  # pytest and others swap sys.stdout; make sure the router is in front
        request_id = str(uuid.uuid4())
        timeout_s = float(function.timeout or 3)
        started = time.monotonic()
        version = str(function.version)
        stream = f"{dt.datetime.now(dt.UTC):%Y/%m/%d}/[{version}]{uuid.uuid4().hex}"
        context = InvocationContext(
            function_name=function.function_name,
            function_version=version,
            invoked_function_arn=function.function_arn,
            memory_limit_in_mb=int(function.memory_size),
            aws_request_id=request_id,
            log_group_name=function.logs_group_name,
            log_stream_name=stream,
            deadline=started + timeout_s,
        )
        buffer = io.StringIO()
        outcome = _Outcome()
        environment = function_environment(function)
        timed_out = threading.Event()

        def target() -> None:
            _capture.buffer = buffer
            _capture.echo = self._echo
            _capture.frozen = timed_out
            try:
                try:
                    key, handler = self._checkout(function, environment)
                except ImportError as error:
                    outcome.error = {
                        "errorMessage": str(error),
                        "errorType": "Runtime.ImportModuleError",
                        "requestId": request_id,
                        "stackTrace": [],
                    }
                    outcome.error_log = f"[ERROR] Runtime.ImportModuleError: {error}"
                    return
                try:
                    if self._take_injected_failure(function.function_name):
                        raise InjectedFault(f"injected fault in {function.function_name}")
                    outcome.value = handler(event, context)
                finally:
                    if not timed_out.is_set():
                        self._checkin(key, handler)  # warm for the next invocation
            except BaseException as error:  # the runtime reports everything, SystemExit included
                outcome.error, outcome.error_log = _error_document(request_id, error)
            finally:
                _capture.buffer = None
                _capture.frozen = None

        worker = threading.Thread(
            target=target, name=f"lambda:{function.function_name}:{request_id[:8]}", daemon=True
        )
        worker.start()
        worker.join(timeout_s)
        duration_ms = (time.monotonic() - started) * 1000
        output = buffer.getvalue()
        if worker.is_alive():
            timed_out.set()  # Lambda discards an environment whose invocation timed out
            message = f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
            outcome = _Outcome(
                error={"errorMessage": message, "errorType": "Sandbox.Timedout"},
                error_log=f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%S.%f}"[:-3]
                + f"Z {request_id} {message}",
            )
        payload = _encode(outcome, request_id)
        function_error = UNHANDLED if outcome.error is not None else None
        log_events = [
            f"START RequestId: {request_id} Version: {version}",
            *[line for line in output.splitlines() if line.strip()],
            *([outcome.error_log] if outcome.error_log else []),
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, round(duration_ms))} ms\tMemory Size: {function.memory_size} MB",
        ]
        self._publish(function, stream, log_events, output)
        return InvocationResult(request_id, payload, function_error, "\n".join(log_events), duration_ms)

    def _publish(self, function: LambdaFunction, stream: str, events: list[str], output: str) -> None:
        if self._publish_logs:
            try:
                logs = function.logs_backend
                logs.ensure_log_group(function.logs_group_name)
                logs.create_log_stream(function.logs_group_name, stream)
                now = int(time.time() * 1000)
                logs.put_log_events(
                    function.logs_group_name,
                    stream,
                    [{"timestamp": now, "message": message} for message in events],
                )
            except Exception:
                _log.exception("could not write the logs of %s to CloudWatch Logs", function.function_name)
        if self._publish_metrics and "_aws" in output:
            try:
                from moto.cloudwatch.models import cloudwatch_backends

                backend = cloudwatch_backends[function.account_id][function.region]
                emf_metrics.put_emf_metrics(output, backend)
            except Exception:
                _log.exception("could not publish the EMF metrics of %s", function.function_name)

    # moto's Invoke contract -----------------------------------------------------------------

    def handle_invoke_api(
        self, function: LambdaFunction, body: Any, headers: Any, response_headers: dict[str, Any]
    ) -> bytes:
        """`LambdaBackend.invoke`'s contract: return the payload and fill `response_headers`."""
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        response_headers["x-amz-executed-version"] = str(function.version)
        if invocation_type == "DryRun":
            return b""
        if invocation_type == "Event":
            self.invoke_async(function, body)
            return b""
        result = self.invoke(function, body)
        if result.function_error is not None:
            response_headers["x-amz-function-error"] = result.function_error
        if (_header(headers, "X-Amz-Log-Type") or "").lower() == "tail":
            tail = result.log.encode()[-LOG_TAIL_BYTES:]
            response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
        return result.payload

    def shutdown(self, wait: bool = True) -> None:
        """Stop the background pool (pending Event invocations are cancelled, running ones finish)."""
        self._async.shutdown(wait=wait, cancel_futures=True)


def _parse_payload(payload: bytes | str | None) -> Any:
    if payload is None or payload in (b"", ""):
        return {}
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as error:
        raise InvalidRequestContent(str(error)) from None


def _encode(outcome: _Outcome, request_id: str) -> bytes:
    if outcome.error is not None:
        return json.dumps(outcome.error).encode()
    try:
        return json.dumps(outcome.value).encode()
    except (TypeError, ValueError) as error:
        outcome.error = {
            "errorMessage": f"Unable to marshal response: {error}",
            "errorType": "Runtime.MarshalError",
            "requestId": request_id,
            "stackTrace": [],
        }
        outcome.error_log = f"[ERROR] Runtime.MarshalError: Unable to marshal response: {error}"
        return json.dumps(outcome.error).encode()


# ---------------------------------------------------------------------------------------------
# install / uninstall


def install(runtime: InProcessLambdaRuntime) -> None:
    """Route moto's docker-free Lambda Invoke to `runtime` and put the output router in front of stdio."""
    uninstall()
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def invoke(  # noqa: PLR0917 - moto's signature
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, Any],
    ) -> bytes:
        function = backend.get_function(function_name, qualifier)
        return runtime.handle_invoke_api(function, body, headers, response_headers)

    _patches.replace(LambdaSimpleBackend, "invoke", invoke)
    from botocore.httpsession import URLLib3Session

    send = URLLib3Session.send

    def send_unless_frozen(session: URLLib3Session, request: Any) -> Any:
        refuse_if_frozen(request)
        return send(session, request)

    _patches.replace(URLLib3Session, "send", send_unless_frozen)
    install_stream_proxies()
    _state.installed = runtime


def uninstall() -> None:
    """Restore moto's Invoke and sys.stdout/sys.stderr (the runtime itself is not shut down)."""
    _patches.restore()
    remove_stream_proxies()
    _state.installed = None


def installed_runtime() -> InProcessLambdaRuntime | None:
    return _state.installed


def is_installed() -> bool:
    return _patches.active
