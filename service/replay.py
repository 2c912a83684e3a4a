"""`scones replay`: re-drive uploads whose run failed for a reason outside the upload, once the fault is gone.

Works against AWS or the local stack alike (plain boto3). The failure records under `failed/` are the
source of truth: each one with a replayable reason (by default the infrastructure's failures, see
`REPLAYABLE_REASONS`) gets a new run named `...-replay-n`; that run's accepted or review record
replaces the failure record, so the upload keeps exactly one outcome. A dead letter whose failure
could not be recorded either (reason `unrecorded`) replays its upload if nothing was recorded since.
Messages in the workflow's DLQ are deleted once dealt with: the upload was replayed, its failure
stands for good (the upload's own fault, or the object is gone or overwritten), or a later run
recorded an outcome; a replayable failure left out by `reasons` stays queued. Events EventBridge
could not deliver (the rule's DLQ) start their upload as the start function would.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from handlers.aws import MISSING_CODES, SUPERSEDED_CODES
from scones.objects import OUTCOME_PREFIXES, NotAnUpload, ObjectRef, object_from_event, s3_version_selector
from scones.outcomes import REPLAYABLE_REASONS, UNRECORDED
from scones.steps import (
    UPLOAD_START_MESSAGES,
    ReplaysExhausted,
    RunInProgress,
    RunInspector,
    RunReader,
    replay_run,
    start_upload,
)
from service.outcome_watch import list_record_keys
from service.queues import receive_each


@dataclass
class ReplayReport:
    replayed: dict[str, str] = field(default_factory=dict)  # object key → execution name
    skipped: dict[str, str] = field(default_factory=dict)  # object key → why
    in_progress: dict[str, str] = field(default_factory=dict)  # object key → its run still going
    dead_letters_deleted: int = 0
    undelivered_started: dict[str, str] = field(default_factory=dict)  # object key → execution name
    # said, never silent: undelivered events that start nothing (deleted), and dead letters or
    # failure records that cannot be read (dead letters stay queued)
    events_ignored: dict[str, str] = field(default_factory=dict)  # message id → why
    unreadable: dict[str, str] = field(default_factory=dict)  # message id or record key → why


def _upload_named_by(text: str | bytes) -> tuple[dict[str, Any], ObjectRef]:
    """A failure record or dead letter, and the upload it names (its `replay` member, else itself);
    ValueError when it is neither."""
    try:
        body = json.loads(text)
        return body, ObjectRef.from_dict(body.get("replay") or body)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{type(error).__name__}: {error}") from None


def _why_not_replayable(s3: Any, obj: ObjectRef) -> str | None:
    """None when the key still holds the failed version; else why a replay cannot run it."""
    try:
        s3.head_object(Bucket=obj.bucket, Key=obj.key, **s3_version_selector(obj.etag, obj.version_id))
    except s3.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in MISSING_CODES:
            return "the object is gone"
        if code in SUPERSEDED_CODES:
            return "the object was overwritten since: its new version has a run of its own"
        raise
    return None


def _replay(obj: ObjectRef, starter: RunInspector, report: ReplayReport) -> bool:
    """Start a replay of the upload, noted in the report; False when its replays are used up. One
    of its runs still going is left to record the outcome (its failure would send a letter anew)."""
    try:
        report.replayed[obj.key] = replay_run(obj, starter)
    except ReplaysExhausted as exhausted:
        report.skipped[obj.key] = f"{exhausted}: left as it is"
        return False
    except RunInProgress as running:
        report.in_progress[obj.key] = running.name  # left to record the outcome
    return True


def _dead_letter_done(
    s3: Any,
    starter: RunInspector,
    obj: ObjectRef,
    body: dict[str, Any],
    *,
    report: ReplayReport,
    reasons: Collection[str],
    records: set[str],
    final: set[str],
) -> bool:
    """Whether a DLQ message is dealt with: its upload was replayed (now, if its failure could not be
    recorded and nothing was since), its failure stands for good (the upload's own fault, or the
    object is gone or overwritten), or a later run recorded an outcome. A replayable failure left
    out by `reasons` is not."""
    if str(body.get("execution_id", "")).endswith(f":{report.replayed.get(obj.key)}"):
        return False  # the letter of the replay started just now (it failed already): a new failure
    recorded = [kind for kind in OUTCOME_PREFIXES if obj.outcome_key(kind) in records]
    if body.get("reason") == UNRECORDED and not recorded and obj.key not in report.replayed:
        if UNRECORDED not in reasons:
            return False
        return _why_not_replayable(s3, obj) is not None or _replay(obj, starter, report)
    failed_key = obj.outcome_key("failed")
    return obj.key in report.replayed or failed_key in final or failed_key not in records


def replay_failed(
    s3: Any,
    starter: RunReader,
    bucket: str,
    *,
    reasons: Collection[str] = REPLAYABLE_REASONS,
    sqs: Any = None,
    dead_letter_queue_url: str | None = None,
    event_dead_letter_queue_url: str | None = None,
) -> ReplayReport:
    report = ReplayReport()
    records = set(list_record_keys(s3, bucket))
    failed_keys = {key for key in records if key.startswith("failed/")}
    final: set[str] = set()  # failure records that stand for good: the upload's fault, or it is gone
    for record_key in sorted(failed_keys):
        try:
            record, obj = _upload_named_by(s3.get_object(Bucket=bucket, Key=record_key)["Body"].read())
        except ValueError as error:
            report.unreadable[record_key] = f"not a failure record ({error})"
            continue
        if {obj.outcome_key("results"), obj.outcome_key("review")} & records:
            # a replay recorded its result and was reported failed before it deleted this record
            s3.delete_object(Bucket=bucket, Key=record_key)
            report.skipped[obj.key] = "recorded since: its stale failure record is deleted"
            final.add(record_key)
        elif record.get("reason") not in reasons:
            report.skipped[obj.key] = f"reason {record.get('reason')} is not replayed"
            if record.get("reason") not in REPLAYABLE_REASONS:
                final.add(record_key)
        elif (reason := _why_not_replayable(s3, obj)) is not None:
            report.skipped[obj.key] = reason
            final.add(record_key)
        else:
            _replay(obj, starter, report)
    if sqs is not None and dead_letter_queue_url:
        kept: list[str] = []  # released at the end: released now, they would be read again
        for message in receive_each(sqs, dead_letter_queue_url, visibility_s=300):
            try:
                body, obj = _upload_named_by(message["Body"])
            except ValueError as error:
                report.unreadable[message["MessageId"]] = f"not a dead letter of the workflow ({error})"
                done = False  # left for a person: nothing is deleted unread
            else:
                done = _dead_letter_done(
                    s3, starter, obj, body, report=report, reasons=reasons, records=records, final=final
                )
            if done:
                sqs.delete_message(QueueUrl=dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"])
                report.dead_letters_deleted += 1
            else:
                kept.append(message["ReceiptHandle"])
        for receipt in kept:
            # a receipt older than its visibility timeout is refused: the letter is visible already
            with contextlib.suppress(sqs.exceptions.ClientError):
                sqs.change_message_visibility(
                    QueueUrl=dead_letter_queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
                )
    if sqs is not None and event_dead_letter_queue_url:
        for message in receive_each(sqs, event_dead_letter_queue_url, visibility_s=300):
            try:
                undelivered = object_from_event(json.loads(message["Body"]))
            except (NotAnUpload, ValueError, KeyError, TypeError, AttributeError) as ignored:
                report.events_ignored[message["MessageId"]] = f"starts nothing: {ignored}"
            else:
                name, what = start_upload(undelivered, starter)
                if what in ("started", "retried"):
                    report.undelivered_started[undelivered.key] = name
                elif what == "running":
                    report.in_progress[undelivered.key] = name
                else:
                    report.skipped[undelivered.key] = f"run {name}: {UPLOAD_START_MESSAGES[what]}"
            sqs.delete_message(QueueUrl=event_dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"])
    return report


def wait_for_executions(
    sfn: Any, execution_arns: Collection[str], timeout_s: float = 300.0
) -> dict[str, str]:
    """Each execution's final status (or RUNNING at the timeout)."""
    status = dict.fromkeys(execution_arns, "RUNNING")
    deadline = time.monotonic() + timeout_s
    while any(value == "RUNNING" for value in status.values()) and time.monotonic() < deadline:
        for arn in [arn for arn, value in status.items() if value == "RUNNING"]:
            status[arn] = sfn.describe_execution(executionArn=arn)["status"]
        time.sleep(0.2)
    return status
