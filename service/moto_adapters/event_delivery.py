"""EventBridge rule targets that are Lambda functions or Step Functions state machines: asynchronous delivery.

moto's `Rule.send_to_targets` delivers to SQS queues, log groups, archives, event buses and API
destinations, and raises `NotImplementedError` for any other target, Lambda and Step Functions
included (which also aborts delivery to the rule's remaining targets). `install(delivery)` wraps it:
the rule's `lambda` and `states` targets are handed to `EventTargetDelivery`, the others to moto's
original code. What the wrapper emulates:

- a DISABLED rule delivers nothing (moto ignores the rule state);
- delivery is asynchronous, like EventBridge's: the call that produced the event (PutObject,
  PutEvents) returns before the target runs. Deliveries run on a bounded pool of named threads;
- a Lambda target is invoked through the in-process runtime (`lambda_runtime.InProcessLambdaRuntime`),
  on the delivery thread (asynchronous to the event's producer, as the "Event" invocation type is),
  with the event as AWS delivers it: `time` as ISO-8601
  (`%Y-%m-%dT%H:%M:%SZ`, moto keeps a float internally) and no `ingestion-time`. The target's
  `Input`, `InputPath` or `InputTransformer` apply, as they do in AWS;
- a Step Functions target gets StartExecution with the event as input and a generated execution
  name (EventBridge cannot choose it; a state machine that needs a deterministic name is started by
  a small Lambda function instead, the design this project uses);
- a failed delivery is retried with exponential backoff up to the target's
  `RetryPolicy.MaximumRetryAttempts` (default: this adapter's small `RetryPolicy.max_retries`) and
  within `MaximumEventAgeInSeconds`, except that a function that ran and failed (raised, timed out)
  is retried at most twice, as Lambda retries an asynchronous invocation, and a target that does not
  exist is not retried (AWS sends it to the dead-letter queue at once). Then the event goes to the
  target's `DeadLetterConfig` SQS queue, if it has one, with EventBridge's message attributes
  (RULE_ARN, TARGET_ARN, ERROR_CODE, ERROR_MESSAGE, EXHAUSTED_RETRY_CONDITION, RETRY_ATTEMPTS).

One simplification: in AWS a function error goes to the *function's* dead-letter queue (or on-failure
destination), not the rule's; the template points both at the same queue, so here both use the
target's `DeadLetterConfig`.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from service.moto_adapters._patching import PatchSet

if TYPE_CHECKING:
    from moto.events.models import Rule

    from service.moto_adapters.lambda_runtime import InProcessLambdaRuntime

MOTO_VERSION = "5.2.5"

ISO_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
HANDLED_SERVICES: Final = frozenset({"lambda", "states"})

ExecutionNamer = Callable[[Mapping[str, Any], Mapping[str, Any]], str]
"""(event as delivered, target) -> Step Functions execution name."""

_log = logging.getLogger(__name__)
_patches = PatchSet("event_delivery")


class _State:
    installed: EventTargetDelivery | None = None


_state = _State()


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a failed delivery: `max_retries` after the first attempt, exponential backoff."""

    max_retries: int = 2
    first_backoff_s: float = 0.1
    backoff_rate: float = 2.0
    max_backoff_s: float = 5.0

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        return float(min(self.max_backoff_s, self.first_backoff_s * self.backoff_rate ** (retry - 1)))


@dataclass(frozen=True)
class DeliveryOutcome:
    """How one event's delivery to one target ended."""

    rule_arn: str
    target_id: str
    target_arn: str
    attempts: int
    delivered: bool
    dead_lettered: bool = False
    error_code: str | None = None
    error_message: str | None = None
    reference: str | None = None  # the Lambda request id or the execution ARN


class DeliveryFailed(Exception):
    def __init__(self, code: str, message: str, *, retries: int | None = None) -> None:
        """`retries`: at most this many retries for this kind of failure (None: the target's policy)."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retries = retries


# Lambda retries a failing asynchronous invocation twice; a target that does not exist is not retried
LAMBDA_ASYNC_RETRIES: Final = 2
NOT_RETRIED: Final = 0


def random_execution_name(event: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    """EventBridge's behaviour: a generated, unique execution name."""
    return str(uuid.uuid4())


def iso_time(value: object) -> object:
    """moto's float event time as the ISO-8601 string AWS delivers (other values unchanged)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime(ISO_TIME_FORMAT)


def event_as_delivered(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as a target receives it: a JSON copy, ISO `time`, no `ingestion-time`."""
    delivered: dict[str, Any] = json.loads(json.dumps(event, default=str))
    if "time" in delivered:
        delivered["time"] = iso_time(delivered["time"])
    delivered.pop("ingestion-time", None)
    return delivered


def target_input(target: Mapping[str, Any], event: Mapping[str, Any], ingestion_time: float) -> Any:
    """What the target receives: `Input`, `InputPath`, `InputTransformer` or the whole event."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        from jsonpath_ng.ext.parser import parse

        matches = parse(target["InputPath"]).find(event)
        return matches[0].value if matches else None
    if "InputTransformer" in target:
        from moto.events.utils import EventTemplateParser

        transformer = target["InputTransformer"]
        return EventTemplateParser.parse(
            input_template=transformer["InputTemplate"],
            input_paths_map=transformer.get("InputPathsMap", {}),
            event={**event, "ingestion-time": ingestion_time},  # type: ignore[typeddict-item]
        )
    return dict(event)


class EventTargetDelivery:
    """Delivers events to Lambda and Step Functions targets on a bounded pool, with retries and DLQ."""

    def __init__(
        self,
        runtime: InProcessLambdaRuntime,
        *,
        retry: RetryPolicy | None = None,
        max_workers: int = 4,
        execution_name: ExecutionNamer = random_execution_name,
        history: int = 256,
    ) -> None:
        self.runtime = runtime
        self.retry = retry or RetryPolicy()
        self._execution_name = execution_name
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="eventbridge-delivery")
        self._pending = 0
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._outcomes: deque[DeliveryOutcome] = deque(maxlen=history)

    # bookkeeping ----------------------------------------------------------------------------

    @property
    def outcomes(self) -> list[DeliveryOutcome]:
        """The most recent delivery outcomes, oldest first."""
        with self._idle:
            return list(self._outcomes)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no delivery is queued or running; False if `timeout` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self, wait: bool = True) -> None:
        """Stop: queued deliveries are dropped (and logged), retry waits end, running attempts finish."""
        self._stopping.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if not wait:
            return
        with self._idle:  # what is still counted now was cancelled, never run
            dropped, self._pending = self._pending, 0
            self._idle.notify_all()
        if dropped:
            _log.warning(
                "%d queued EventBridge deliveries dropped at shutdown; the reconciler re-drives their "
                "uploads when the stack starts again",
                dropped,
            )

    # delivery -------------------------------------------------------------------------------

    def submit(
        self, rule_arn: str, target: Mapping[str, Any], event: Mapping[str, Any]
    ) -> Future[DeliveryOutcome]:
        """Queue one event for one target (the event and target are copied now)."""
        snapshot = json.loads(json.dumps(event, default=str))
        target_copy = copy.deepcopy(dict(target))
        received = time.time()
        with self._idle:
            self._pending += 1
        try:
            return self._pool.submit(self._deliver, rule_arn, target_copy, snapshot, received)
        except BaseException:
            self._done(None)
            raise

    def _done(self, outcome: DeliveryOutcome | None) -> None:
        with self._idle:
            self._pending -= 1
            if outcome is not None:
                self._outcomes.append(outcome)
            self._idle.notify_all()

    def _deliver(
        self, rule_arn: str, target: dict[str, Any], event: dict[str, Any], received: float
    ) -> DeliveryOutcome:
        outcome: DeliveryOutcome | None = None
        try:
            outcome = self._deliver_with_retries(rule_arn, target, event, received)
            return outcome
        finally:
            self._done(outcome)

    def _deliver_with_retries(
        self, rule_arn: str, target: dict[str, Any], event: dict[str, Any], received: float
    ) -> DeliveryOutcome:
        arn, target_id = str(target["Arn"]), str(target["Id"])
        delivered_event = event_as_delivered(event)
        policy = target.get("RetryPolicy") or {}
        max_retries = int(policy.get("MaximumRetryAttempts", self.retry.max_retries))
        max_age = policy.get("MaximumEventAgeInSeconds")
        attempts = 0
        while True:
            attempts += 1
            try:
                reference = self._attempt(target, delivered_event, event.get("ingestion-time", received))
                return DeliveryOutcome(
                    rule_arn, target_id, arn, attempts, delivered=True, reference=reference
                )
            except DeliveryFailed as failure:
                code, message, cap = failure.code, failure.message, failure.retries
            except Exception as error:
                code, message, cap = type(error).__name__, str(error), None
            next_wait = self.retry.backoff(attempts)
            exhausted: str | None
            if cap == NOT_RETRIED:
                exhausted = "NotRetriable"
            elif attempts > (max_retries if cap is None else min(cap, max_retries)):
                exhausted = "MaximumRetryAttempts"
            elif max_age is not None and time.time() - received + next_wait > float(max_age):
                exhausted = "MaximumEventAgeInSeconds"
            elif not self._stopping.wait(next_wait):
                continue
            else:
                exhausted = None  # the local stack is stopping: no dead letter, the reconciler redrives
            if exhausted is None:
                _log.warning("EventBridge delivery to %s abandoned: the local stack is stopping", arn)
                dead_lettered = False
            else:
                dead_lettered = self._dead_letter(
                    rule_arn=rule_arn,
                    target=target,
                    event=delivered_event,
                    failure=DeliveryFailed(code, message),
                    exhausted=exhausted,
                    attempts=attempts,
                )
                _log.warning(
                    "EventBridge gave up delivering event %s to %s after %d attempts (%s: %s)%s",
                    event.get("id"),
                    arn,
                    attempts,
                    code,
                    message[:300],
                    "; sent to its dead-letter queue" if dead_lettered else "",
                )
            return DeliveryOutcome(
                rule_arn,
                target_id,
                arn,
                attempts,
                delivered=False,
                dead_lettered=dead_lettered,
                error_code=code,
                error_message=message,
            )

    def _attempt(self, target: Mapping[str, Any], event: Mapping[str, Any], ingestion_time: float) -> str:
        from moto.utilities.arns import parse_arn

        arn = str(target["Arn"])
        payload = target_input(target, event, ingestion_time)
        if parse_arn(arn).service == "lambda":
            return self._invoke_lambda(arn, payload)
        return self._start_execution(arn, payload, event, target)

    def _invoke_lambda(self, arn: str, payload: Any) -> str:
        from moto.awslambda.utils import get_backend
        from moto.utilities.arns import parse_arn

        parsed = parse_arn(arn)
        try:
            function = get_backend(parsed.account, parsed.region).get_function(arn)
        except Exception as error:
            raise DeliveryFailed(
                "ResourceNotFoundException", f"Function not found: {arn} ({error})", retries=NOT_RETRIED
            ) from None
        result = self.runtime.invoke(function, json.dumps(payload))
        error_document = result.error
        if error_document is not None:  # the function ran and failed: Lambda's asynchronous retries
            raise DeliveryFailed(
                str(error_document.get("errorType", "Unhandled")),
                str(error_document.get("errorMessage", "")),
                retries=LAMBDA_ASYNC_RETRIES,
            )
        return result.request_id

    def _start_execution(
        self, arn: str, payload: Any, event: Mapping[str, Any], target: Mapping[str, Any]
    ) -> str:
        from moto.stepfunctions.responses import get_backend
        from moto.utilities.arns import parse_arn

        parsed = parse_arn(arn)
        execution = get_backend(parsed.account, parsed.region).start_execution(
            arn, self._execution_name(event, target), json.dumps(payload)
        )
        return str(execution.execution_arn)

    def _dead_letter(
        self,
        *,
        rule_arn: str,
        target: Mapping[str, Any],
        event: Mapping[str, Any],
        failure: DeliveryFailed,
        exhausted: str,
        attempts: int,
    ) -> bool:
        dlq_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not dlq_arn:
            return False
        from moto.sqs.models import sqs_backends
        from moto.utilities.arns import parse_arn

        parsed = parse_arn(str(dlq_arn))

        def attribute(value: object) -> dict[str, str]:
            return {"DataType": "String", "StringValue": str(value)}

        try:
            sqs_backends[parsed.account][parsed.region].send_message(
                queue_name=parsed.resource_id,
                message_body=json.dumps(event),
                message_attributes={
                    "RULE_ARN": attribute(rule_arn),
                    "TARGET_ARN": attribute(target["Arn"]),
                    "ERROR_CODE": attribute(failure.code),
                    "ERROR_MESSAGE": attribute(failure.message[:1000] or failure.code),
                    "EXHAUSTED_RETRY_CONDITION": attribute(exhausted),
                    "RETRY_ATTEMPTS": {"DataType": "Number", "StringValue": str(attempts - 1)},
                },
            )
        except Exception:
            _log.exception("could not send the event to the dead-letter queue %s", dlq_arn)
            return False
        return True


def install(delivery: EventTargetDelivery) -> None:
    """Wrap moto's `Rule.send_to_targets`: Lambda and Step Functions targets go to `delivery`."""
    uninstall()
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    original: Callable[..., None] = Rule.send_to_targets

    def send_to_targets(rule: Rule, original_event: Any, transform_input: bool = True) -> None:
        if rule.state == "DISABLED" or not rule.event_pattern.matches_event(original_event):
            return
        ours = [t for t in rule.targets if parse_arn(t["Arn"]).service in HANDLED_SERVICES]
        for target in ours:
            delivery.submit(rule.arn, target, original_event)
        if len(ours) < len(rule.targets):
            others = copy.copy(rule)
            others.targets = [t for t in rule.targets if t not in ours]
            original(others, original_event, transform_input)

    _patches.replace(Rule, "send_to_targets", send_to_targets)
    _state.installed = delivery


def uninstall() -> None:
    """Restore moto's `send_to_targets` (the delivery pool is not shut down)."""
    _patches.restore()
    _state.installed = None


def installed_delivery() -> EventTargetDelivery | None:
    return _state.installed


def is_installed() -> bool:
    return _patches.active
