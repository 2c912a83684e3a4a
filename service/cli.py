"""The `scones` command line: stage data, train, evaluate, serve the model, and run the demo."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scones.defaults import DEFAULT_ENDPOINT_NAME
from scones.evaluation import DEFAULT_THRESHOLD
from scones.model_store import ModelStore, NoModelError, default_home
from service import arguments
from workflow.names import DEFAULT_STACK_NAME

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # the template's LogLevel values


def _print_json(document: object) -> None:
    print(json.dumps(document, indent=2))


def cmd_stage(args: argparse.Namespace) -> int:
    from training.staging import stage

    staged = stage(args.dataset, args.out, cache_dir=default_home() / "cache")
    if args.bucket:
        from training.staging import upload

        (s3,) = _aws_clients(args, "s3")
        count = upload(staged.root, args.bucket, s3, prefix=args.prefix)
        print(f"uploaded {count} objects to s3://{args.bucket}/{args.prefix}")
    _print_json({"root": str(staged.root), "counts": staged.counts, "sha256": staged.sha256})
    return 0


def _sagemaker_settings(args: argparse.Namespace) -> Any:
    from service.sagemaker_jobs import SageMakerSettings, sagemaker_role

    bucket = _bucket(args)
    model_data = getattr(args, "model_data", None) or ""
    args.role = sagemaker_role(args.role, buckets=[bucket], model_data=model_data, **_stack_lookup(args))
    return SageMakerSettings(
        role_arn=args.role,
        bucket=bucket,
        region=args.region,
        serverless=bool(getattr(args, "serverless", False)),
        serving_image=getattr(args, "serving_image", "") or "",
    )


def cmd_train(args: argparse.Namespace) -> int:
    from service.training_run import train_and_publish
    from training.train import hyperparameters_from

    if args.on == "sagemaker":
        from dataclasses import asdict

        from service.sagemaker_jobs import run, sagemaker_hyperparameters, timestamped, train_actions

        settings = _sagemaker_settings(args)
        sagemaker, s3 = _aws_clients(args, "sagemaker", "s3")
        hyperparameters = sagemaker_hyperparameters(asdict(hyperparameters_from(args)))
        run(
            train_actions(sagemaker, s3, settings, hyperparameters, timestamped(settings.prefix)),
            dry_run=args.dry_run,
        )
        return 0

    if args.dry_run:
        print("scones train: --dry-run plans a SageMaker job: give --on sagemaker", file=sys.stderr)
        return 2
    metadata = train_and_publish(
        dataset=args.dataset,
        store=ModelStore.default(),
        progress=not args.no_progress,
        hyperparameters=hyperparameters_from(args),
    )
    store = ModelStore.default()
    if args.json:
        _print_json({"version": metadata.version, "metrics": metadata.metrics})
    print(
        f"published {metadata.version} to {store.path(metadata.version)}: the model the local "
        "endpoint serves from now on (its figures are the val_ and test_ lines above)",
        file=sys.stderr,
    )
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    from training.crossval import cross_validate_folder, print_report
    from training.staging import stage_or_reuse

    home = default_home()
    staged = stage_or_reuse(args.dataset, home / "data", cache_dir=home / "cache")
    print_report(cross_validate_folder(staged.split_dir("train"), args), as_json=args.json)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from scones.evaluation import evaluate_folder
    from scones.inference import OnnxClassifier

    model_dir = args.model or ModelStore.default().current_path()
    report = evaluate_folder(args.folder, OnnxClassifier(model_dir, threads=2), threshold=args.threshold)
    if args.json:
        _print_json(report)
    else:
        print(f"model {report['model_version']} on {report['n']} images of {args.folder}")
        for rejected in report["rejected"]:
            print(f"  left out {rejected['path']}: {rejected['reason']}")
        print(f"  accuracy {report['accuracy']:.4f}  ece {report['ece']:.4f}")
        accepted = report["accepted_accuracy"]
        print(
            f"  at threshold {args.threshold}: coverage {report['coverage']:.4f}, "
            f"accuracy among accepted {'n/a' if accepted is None else f'{accepted:.4f}'}"
        )
        for name, accuracy in report["per_class"].items():
            print(f"  {name}: {accuracy}")
    if report["n"] == 0:
        print(f"scones evaluate: no image of {args.folder} could be read", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve in the foreground: what a SageMaker container runs (`serve`, port 8080)."""
    import uvicorn

    from scones.model_server import Endpoint, ModelSlot, create_app
    from service.endpoint import model_loader

    container_model = Path(os.environ.get("SCONES_MODEL_DIR", "/opt/ml/model"))  # where SageMaker puts it
    model_dir = args.model or (container_model if (container_model / "model.onnx").exists() else None)
    # serving the store's current model: follow it, so `scones models promote/rollback` switch it live
    follow = ModelStore.default().current_version if model_dir is None else None
    slot = ModelSlot(lambda: model_loader(model_dir, None, args.threads), current_version=follow)
    slot.get()
    slot.follow()
    app = create_app({args.name: Endpoint(args.name, slot)}, default=args.name)
    ensure_port_free(args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Run the local stack in the foreground until Ctrl-C or SIGTERM."""
    import signal
    import threading

    from service.local_stack import LocalStack

    store = ModelStore.default()
    store.current_version()  # fail early, with the hint to train, when no model is published
    stopping = threading.Event()

    def stop_requested(*_: Any) -> None:
        stopping.set()  # stops once started (a start in progress finishes first) and saves
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # SIGINT too where a shell started it ignored (`&`)
        signal.signal(stop_signal, stop_requested)
    data_dir = None if args.ephemeral else (args.data_dir or default_home() / "stack")
    with LocalStack(
        store=store, threshold=args.threshold, port=args.port, log_level=args.log_level, data_dir=data_dir
    ) as stack:
        resources = stack.resources
        if stack.restored is not None:
            print(
                f"restored from {data_dir}: {stack.restored.objects} objects, {stack.restored.messages} "
                f"queue messages, {stack.restored.datapoints} metric data points",
                flush=True,
            )
        if stack.reconciled and stack.reconciled.get("started"):
            print(f"re-driving {len(stack.reconciled['started'])} uploads that had no outcome", flush=True)
        url = stack.aws_endpoint_url
        print(
            f"""scones local stack is up (model {store.current_version()})
  AWS endpoint (S3, SQS, Step Functions, ...): {url}
  model endpoint {stack.names.endpoint}: {stack.info.model_endpoint_url if stack.info else ""}
  data bucket:   s3://{resources.bucket}   (drop images under inbox/)
  review queue:  {resources.review_queue_url}
  failure DLQ:   {resources.dead_letter_queue_url}

Try it (any credentials work; region us-east-1):
  export AWS_ENDPOINT_URL={url} AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  aws s3 cp photo.jpg s3://{resources.bucket}/inbox/photo.jpg
  aws s3 ls --recursive s3://{resources.bucket}/results/
  aws --endpoint-url {url} sqs receive-message --queue-url {resources.review_queue_url}
  (AWS CLI v1's sqs commands ignore AWS_ENDPOINT_URL: give them --endpoint-url)
  scones submit photo.jpg --wait
Ctrl-C stops it.""",
            flush=True,
        )
        try:
            while not stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print(
            "stopping the local stack" + (f" (saving its data to {data_dir})" if data_dir else ""), flush=True
        )
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Upload images into the inbox of the stack `AWS_ENDPOINT_URL` (or AWS) points at."""
    from scones.objects import INBOX_PREFIX, ObjectRef, record_version, version_id_or_none
    from service.outcome_watch import standing_failures, wait_for_outcomes

    if not f"{args.prefix.strip('/')}/".startswith(INBOX_PREFIX):
        print(
            f"scones submit: only uploads under {INBOX_PREFIX} start a run, not {args.prefix}",
            file=sys.stderr,
        )
        return 2
    missing = [str(path) for path in args.paths if not path.is_file()]
    if missing:
        folders = (
            " (for a folder's images give them, e.g. DIR/*.jpg)"
            if any(p.is_dir() for p in args.paths)
            else ""
        )
        print(f"scones submit: not a file: {', '.join(missing)} (nothing uploaded){folders}", file=sys.stderr)
        return 2
    names = [path.name for path in args.paths]
    if len(set(names)) < len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        print(
            f"scones submit: {', '.join(twice)} given twice: both would be uploaded to one key, the second"
            " replacing the first (nothing uploaded; submit them one at a time, or rename one)",
            file=sys.stderr,
        )
        return 2
    (s3,) = _aws_clients(args, "s3")
    bucket = _bucket(args)
    destinations = {path: f"{args.prefix.rstrip('/')}/{path.name}" for path in args.paths}
    keys = list(destinations.values())
    # the same bytes put again after a failure are retried: the retry's outcome is the answer
    stale = standing_failures(s3, bucket, keys) if args.wait else {}
    uploaded: dict[str, ObjectRef] = {}  # the version put now: an earlier upload's record must not answer
    for path, key in destinations.items():
        s3.upload_file(str(path), bucket, key)
        print(f"uploaded {path} to s3://{bucket}/{key}")
        if args.wait:
            head = s3.head_object(Bucket=bucket, Key=key)
            etag, version_id = head["ETag"].strip('"'), version_id_or_none(head.get("VersionId"))
            uploaded[key] = ObjectRef(bucket, key, etag, version_id=version_id)
    if not args.wait:
        return 0
    versions = {key: record_version(obj.etag, obj.version_id) for key, obj in uploaded.items()}
    index = wait_for_outcomes(s3, bucket, keys, timeout_s=args.timeout, versions=versions, stale=stale)
    answered = 0
    for key in keys:
        record = index.records.get(key)
        standing = uploaded[key].outcome_key("failed")
        if record is None and standing in stale:  # an outcome, though not a new one
            failure = json.loads(s3.get_object(Bucket=bucket, Key=standing)["Body"].read())
            print(
                f"{key}: failed {failure.get('reason')}, the outcome from before: no new one within "
                f"{args.timeout} s (a retry may still be going; scones replay retries)"
            )
            answered += 1
            continue
        if record is None:
            print(f"{key}: no outcome within {args.timeout} s")
            continue
        detail = record.get("reason") or f"{record.get('label')} ({record.get('confidence')})"
        print(f"{key}: {record['outcome']} {detail}")
        answered += 1
    return 0 if answered == len(keys) else 1


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-drive failed uploads of the stack `AWS_ENDPOINT_URL` (or AWS) points at."""
    from handlers.aws import StepFunctionsStarter
    from scones.outcomes import REPLAYABLE_REASONS
    from service.replay import replay_failed, wait_for_executions
    from service.sagemaker_jobs import SettingsError
    from workflow.names import StackNames

    names = StackNames()
    s3, sfn, sqs = _aws_clients(args, "s3", "stepfunctions", "sqs")

    def local_state_machine() -> str:
        machines = sfn.list_state_machines()["stateMachines"]
        for machine in machines:
            if machine["name"] == names.state_machine:
                arn: str = machine["stateMachineArn"]
                return arn
        raise SettingsError(f"no state machine named {names.state_machine}: is the stack running?")

    def queue(output: str, local_name: str) -> str:
        return _stack_value(args, output, lambda: sqs.get_queue_url(QueueName=local_name)["QueueUrl"])

    arn = _stack_value(args, "StateMachineArn", local_state_machine)
    report = replay_failed(
        s3,
        StepFunctionsStarter(sfn, arn),
        _bucket(args),
        reasons=set(args.reason) if args.reason else REPLAYABLE_REASONS,
        sqs=sqs,
        dead_letter_queue_url=queue("FailedQueueUrl", names.dead_letter_queue),
        event_dead_letter_queue_url=queue("UndeliveredEventsQueueUrl", names.event_dead_letter_queue),
    )
    for key, name in report.replayed.items():
        print(f"replaying {key} as {name}")
    for key, why in report.skipped.items():
        print(f"skipped {key}: {why}")
    for key, name in report.in_progress.items():
        print(f"left {key} to its run {name}, still going")
    for key, name in report.undelivered_started.items():
        print(f"started undelivered {key} as {name}")
    for message_id, why in report.events_ignored.items():
        print(f"deleted undelivered event {message_id}: it {why}")
    for name, why in report.unreadable.items():
        print(f"left {name} as it is: {why}")
    print(
        f"{len(report.replayed)} replayed, {len(report.in_progress)} still going, "
        f"{len(report.skipped)} skipped, "
        f"{report.dead_letters_deleted} dead letters cleared, "
        f"{len(report.undelivered_started)} undelivered started"
    )
    if args.wait:
        from scones.objects import execution_arn

        # run → object key (two versions of one key in a versioned bucket are two runs)
        runs = {
            name: key
            for started in (report.replayed, report.in_progress, report.undelivered_started)
            for key, name in started.items()
        }
        status = wait_for_executions(sfn, [execution_arn(arn, name) for name in runs], timeout_s=args.timeout)
        for name, key in runs.items():
            run = execution_arn(arn, name)
            record = _run_outcome(s3, sfn, run)
            detail = record.get("reason") or record.get("label") or ""
            outcome = f"{record.get('outcome', 'no outcome')} {detail}".strip()
            print(f"{key}: {outcome} (run {name}: {status.get(run, 'unknown')})")
        return 0 if all(result == "SUCCEEDED" for result in status.values()) else 1
    return 0


def _run_outcome(s3: Any, sfn: Any, run_arn: str) -> dict[str, Any]:
    """The outcome record of the object version a run was for (its input names it), if it has one."""
    from handlers.aws import S3ObjectStore
    from scones.objects import OUTCOME_PREFIXES, ObjectRef
    from scones.steps import recorded_outcome

    obj = ObjectRef.from_dict(json.loads(sfn.describe_execution(executionArn=run_arn)["input"])["object"])
    return recorded_outcome(S3ObjectStore(s3), obj, kinds=OUTCOME_PREFIXES) or {}


def cmd_metrics(args: argparse.Namespace) -> int:
    """Print the service's CloudWatch metrics (AWS, or the stack `AWS_ENDPOINT_URL` points at)."""
    from monitoring.metrics import format_table, parse_duration, read_metrics

    (cloudwatch,) = _aws_clients(args, "cloudwatch")
    metrics = read_metrics(cloudwatch, since=parse_duration(args.since))
    print(json.dumps(metrics, indent=2) if args.json else format_table(metrics))
    return 0


def _bucket(args: argparse.Namespace) -> str:
    """`--bucket`, else the local stack's (an endpoint URL is set), else the deployed stack's."""
    from service.sagemaker_jobs import data_bucket

    args.bucket = data_bucket(args.bucket, **_stack_lookup(args))
    bucket: str = args.bucket
    return bucket


def _stack_value(args: argparse.Namespace, output: str, local: Callable[[], str]) -> str:
    """`local()` on the embedded stack (an endpoint URL is set), else the deployed stack's `output`."""
    from service.sagemaker_jobs import stack_value

    return stack_value(output, local=local, **_stack_lookup(args))


def _stack_lookup(args: argparse.Namespace) -> dict[str, Any]:
    """Where a command finds its stack's resources: the endpoint URL (the embedded stack) or the
    deployed stack's name and a CloudFormation client for its outputs."""
    return {
        "endpoint_url": getattr(args, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL"),
        "stack_name": args.stack_name,
        "cloudformation": lambda: _aws_clients(args, "cloudformation")[0],
    }


def _aws_clients(args: argparse.Namespace, *services: str, endpoint_url: str | None = None) -> list[Any]:
    """Clients in the command's `--region` (the one its stack and jobs use) at its `--endpoint-url`."""
    import boto3

    from service.sagemaker_jobs import default_region

    options = {"region_name": getattr(args, "region", None) or default_region()}
    endpoint = endpoint_url or getattr(args, "endpoint_url", None)
    if endpoint:
        options["endpoint_url"] = endpoint
    return [boto3.client(service, **options) for service in services]  # type: ignore[call-overload]


def cmd_review(args: argparse.Namespace) -> int:
    """Work through the review queue in the terminal, labeling each image."""
    import getpass

    from monitoring.review import CHOICES, Answer, Reviewer, ReviewItem, review_queue, summary
    from service.sagemaker_jobs import SettingsError
    from workflow.names import StackNames

    s3, sqs = _aws_clients(args, "s3", "sqs")

    def local_queue() -> str:
        name = StackNames().review_queue
        try:
            url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            raise SettingsError(
                f"the stack has no review queue {name!r}: deleted? (`scones up` makes it again on start)"
            ) from None
        return url

    queue_url = args.queue_url or _stack_value(args, "ReviewQueueUrl", local_queue)
    reviewer = Reviewer(s3, sqs, queue_url, reviewer=args.reviewer or getpass.getuser())
    if args.web:
        from monitoring.review_web import serve_review

        ensure_port_free("127.0.0.1", args.port)
        print(f"review page: http://127.0.0.1:{args.port}/  (Ctrl-C stops it)", flush=True)
        session = serve_review(reviewer, port=args.port)
        print(f"labeled {session.labeled}, skipped {session.skipped}")
        return 0

    def ask(item: ReviewItem, thumbnail: Path | None) -> Answer:
        print(summary(item))
        print(f"  thumbnail: {thumbnail}" if thumbnail else "  (the upload cannot be shown)")
        while True:
            try:
                answer = input("  [b]icycle [m]otorcycle [n]either [s]kip [q]uit > ").strip().lower()
                if not sys.stdin.isatty():
                    print()  # piped answers are not echoed: end the prompt's line
            except EOFError:
                return "quit"
            if answer in CHOICES:
                return CHOICES[answer]
            print("  answer b, m, n, s or q")

    tally = review_queue(reviewer, ask, args.thumbnails, limit=args.limit)
    print(
        f"labeled {len(tally.labeled)}, skipped {len(tally.skipped)}, "
        f"already labeled by someone else {len(tally.already_labeled)}, image gone {len(tally.gone)}"
    )
    if tally.gone:
        print(f"taken off the queue, their reviewed version deleted or overwritten: {', '.join(tally.gone)}")
    if reviewer.malformed:
        print(f"left on the queue, not outcome records: messages {', '.join(reviewer.malformed)}")
    return 0


def cmd_labels_export(args: argparse.Namespace) -> int:
    from monitoring.review import LABEL_CLASSES, export_labels

    (s3,) = _aws_clients(args, "s3")
    classes = LABEL_CLASSES if args.include_neither else LABEL_CLASSES[:-1]
    counts = export_labels(s3, _bucket(args), args.out, classes)
    missing = counts.pop("missing", 0)
    print(", ".join(f"{label} {count}" for label, count in counts.items()) + f" images in {args.out}")
    return 1 if missing else 0  # export_labels said which labels have no image copy


def cmd_report(args: argparse.Namespace) -> int:
    """Write the plots and the HTML page of recent outcomes."""
    from monitoring.report import write_report

    (s3,) = _aws_clients(args, "s3")
    written = write_report(s3, _bucket(args), args.out, last=args.last)
    outcomes = ", ".join(f"{count} {outcome}" for outcome, count in written["outcomes"].items())
    page = args.out / "index.html"
    print(f"{written['inferences']} recent outcomes ({outcomes}): wrote {page} and the plots")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy the stack (with --artifacts-bucket) and create or update the model's SageMaker endpoint."""
    from service.sagemaker_jobs import hosting_actions, hosting_like, run, stack_actions, stack_outputs

    if not args.artifacts_bucket and not args.model_data:
        print(
            "scones deploy: nothing to deploy: give --artifacts-bucket (the stack) and/or --model-data "
            "(the endpoint)",
            file=sys.stderr,
        )
        return 2
    if args.model_data:
        parts = args.model_data.rstrip("/").split("/")
        if not args.version and (len(parts) < 6 or not args.model_data.startswith("s3://")):
            print(
                "scones deploy: --model-data is not a training job's s3://BUCKET/PREFIX/JOB/output/model.tar.gz:"
                " give --version",
                file=sys.stderr,
            )
            return 2
    if args.model_data and not args.serving_image:
        # checked before the stack deploys, not after it
        print("scones deploy: --model-data needs --serving-image", file=sys.stderr)
        return 2
    if args.artifacts_bucket:
        # only what is given: an update keeps the stack's other values (CloudFormation deploy does)
        parameters = {
            key: str(value)
            for key, value in (
                ("EndpointName", args.endpoint_name),
                ("ConfidenceThreshold", args.threshold),
                ("AlarmEmail", args.alarm_email),
            )
            if value is not None
        }
        stack = stack_actions(
            artifacts_bucket=args.artifacts_bucket,
            stack_name=args.stack_name,
            parameters=parameters,
            region=args.region,
        )
        run(stack, dry_run=args.dry_run)  # first: the endpoint's data capture goes to the stack's bucket
        if not args.dry_run:
            (cloudformation,) = _aws_clients(args, "cloudformation")
            outputs = stack_outputs(cloudformation, args.stack_name) or {}
            print(f"drop images into {outputs.get('InboxUri', '(the stack has no InboxUri output)')}")
    if args.model_data:
        endpoint_name = _endpoint_name(args, *_aws_clients(args, "cloudformation"))
        if args.dry_run and args.artifacts_bucket:  # the stack is not deployed by a dry run
            args.bucket = args.bucket or f"<{args.stack_name}'s DataBucketName>"
            args.role = args.role or f"<{args.stack_name}'s SageMakerRoleArn>"
        settings = _sagemaker_settings(args)
        (sagemaker,) = _aws_clients(args, "sagemaker")
        if args.serverless is None:  # no hosting asked for: a new model, the endpoint's hosting kept
            settings = hosting_like(sagemaker, settings, endpoint_name)
        if args.capture_percent is not None:
            settings = dataclasses.replace(settings, capture_percent=args.capture_percent)
        version = args.version or args.model_data.rstrip("/").split("/")[-3]
        run(
            hosting_actions(sagemaker, settings, endpoint_name, args.model_data, version),
            dry_run=args.dry_run,
        )
    return 0


def _endpoint_name(args: argparse.Namespace, cloudformation: Any) -> str:
    from service.sagemaker_jobs import endpoint_name

    deploying_the_stack = bool(getattr(args, "artifacts_bucket", None))  # a new one calls the default
    return endpoint_name(
        args.endpoint_name,
        stack_name=args.stack_name,
        cloudformation=cloudformation,
        deploying=deploying_the_stack,
    )


def cmd_destroy(args: argparse.Namespace) -> int:
    """Delete the endpoint, endpoint configs, models and stack (and the data, if asked)."""
    from service.sagemaker_jobs import SageMakerSettings, SettingsError, destroy_actions, run

    bucket = ""  # only --delete-data needs it: the rest is found without the stack, which may be gone
    if args.delete_data:
        try:
            bucket = _bucket(args)
        except SettingsError as error:
            print(f"scones destroy: the data stays ({error}); deleting the rest", file=sys.stderr)
    settings = SageMakerSettings(role_arn="", bucket=bucket, region=args.region)
    sagemaker, cloudformation, s3 = _aws_clients(args, "sagemaker", "cloudformation", "s3")
    actions = destroy_actions(
        sagemaker,
        cloudformation,
        s3,
        settings,
        endpoint_name=_endpoint_name(args, cloudformation),
        stack_name=args.stack_name,
        delete_data=bool(bucket),
    )
    if not actions:
        print("nothing to delete")
    run(actions, dry_run=args.dry_run)
    return 0


def _bucket_registry(args: argparse.Namespace) -> Any:
    """The data bucket's registry when an AWS endpoint is configured (the local stack or AWS), else None."""
    from scones.registry import BucketRegistry

    endpoint_url = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint_url:
        return None
    (s3,) = _aws_clients(args, "s3", endpoint_url=endpoint_url)
    return BucketRegistry(s3, _bucket(args))


def cmd_models(args: argparse.Namespace) -> int:
    """The local model store: list versions, promote one, roll back to the one served before.

    With an AWS endpoint (`--endpoint-url` or $AWS_ENDPOINT_URL, e.g. `scones up`'s), the data bucket's
    registry shows each version's status and records promotions and rollbacks.
    """
    from scones.model_metadata import ModelMetadata
    from scones.registry import entry_from, record_promotion

    store = ModelStore.default()
    registry = _bucket_registry(args)

    def registry_says(action: Callable[[], Any]) -> Any:
        """The registry's part; the store is the source of truth, so a registry out of reach is a warning."""
        try:
            return action()
        except Exception as error:
            message = user_error(error)
            if message is None:
                raise
            print(f"scones models: the registry could not be reached ({message})", file=sys.stderr)
            return None

    def served(version: str, reason: str) -> None:
        if registry is not None:
            registry_says(lambda: registry.register(entry_from(ModelMetadata.read(store.path(version)))))
            registry_says(lambda: record_promotion(registry, version, reason=reason))

    if args.models_command == "promote":
        store.set_current(args.version)
        served(args.version, "scones models promote")
        print(
            f"serving {args.version} (a running endpoint switches within a second or two: it loads it first)"
        )
    elif args.models_command == "rollback":
        version = store.rollback()
        served(version, "scones models rollback")
        print(f"serving {version} again")
    else:
        try:
            current = store.current_version()
        except NoModelError:
            current = None
        entries = registry_says(registry.entries) if registry else None
        statuses = {entry.version: entry.status for entry in entries or []}
        if not store.versions():
            print("no model published yet: `scones train` makes one", file=sys.stderr)
        for version in store.versions():
            metrics = ModelMetadata.read(store.path(version)).metrics.get("test", {})
            accuracy = metrics.get("accuracy")
            shown = f"test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else ""
            known = registry is not None and entries is not None  # None: the registry was out of reach
            status = f"{statuses.get(version, 'unregistered'):<12}  " if known else ""
            print(f"{'*' if version == current else ' '} {version}  {status}{shown}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

    summary = run_demo(dataset=args.dataset, threshold=args.threshold, summary_path=args.summary)
    problems = [
        *([f"{summary['missing']} uploads have no outcome"] if summary["missing"] else []),
        *([f"{summary['duplicated']} uploads have two outcomes"] if summary["duplicated"] else []),
        *([] if summary["metrics_match_outcomes"] else ["the CloudWatch counts differ from the records"]),
    ]
    for problem in problems:
        print(f"scones demo: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _add_bucket_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--bucket",
        help="the data bucket (default: the local stack's with an endpoint URL, else --stack-name's)",
    )
    command.add_argument(
        "--stack-name", default=DEFAULT_STACK_NAME, help=f"the deployed stack (default: {DEFAULT_STACK_NAME})"
    )


def _add_aws_flags(command: argparse.ArgumentParser) -> None:
    _add_bucket_flags(command)
    command.add_argument(
        "--region", help="the AWS region (AWS commands): default the one boto3 uses, else us-east-1"
    )
    command.add_argument("--endpoint-url", help="AWS commands: default $AWS_ENDPOINT_URL, else AWS itself")
    command.add_argument("--dry-run", action="store_true", help="print what it would do on AWS, do nothing")


def _duration(text: str) -> str:
    """An argparse check: the text stays as given, `monitoring.metrics.parse_duration` reads it."""
    from monitoring.metrics import parse_duration

    try:
        parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _reason_code(text: str) -> str:
    from typing import get_args

    from scones.outcomes import FAILURE_REASONS
    from scones.preprocessing import RejectReason

    known = FAILURE_REASONS | set(get_args(RejectReason))
    if text not in known:
        raise argparse.ArgumentTypeError(f"{text} is no reason code (one of: {', '.join(sorted(known))})")
    return text


def ensure_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on, in one line, before a server logs its own failure."""
    from service.endpoint import port_in_use

    if reason := port_in_use(host, port):
        raise OSError(f"could not listen on {host}:{port} ({reason}): give another --port")


def build_parser() -> argparse.ArgumentParser:
    from service.sagemaker_jobs import ENDPOINT_NAME_HELP, ROLE_HELP
    from training.crossval import add_crossval_flags
    from training.train import add_hyperparameter_flags

    parser = argparse.ArgumentParser(prog="scones", description="Scones Unlimited image-routing service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dataset_help = (
        "a folder in the shared CIFAR-100 layout, an archive file or URL "
        "(default: $SCONES_DATASET, else the official archive)"
    )

    stage = commands.add_parser("stage", help="stage the bicycle/motorcycle data (and upload it to S3)")
    stage.add_argument("--dataset", help=dataset_help)
    stage.add_argument(
        "--out", type=Path, default=default_home() / "data", help="where to write train/ and test/"
    )
    stage.add_argument("--bucket", help="upload train/, test/ and the .lst files to this bucket")
    stage.add_argument("--prefix", default="", help="key prefix for the upload")
    stage.set_defaults(handler=cmd_stage)

    train = commands.add_parser(
        "train", help="stage, train, export and publish the model the endpoint serves"
    )
    train.add_argument("--dataset", help=dataset_help)
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--json", action="store_true", help="also print the version and metrics as JSON")
    train.add_argument("--on", choices=["local", "sagemaker"], default="local", help="where to train")
    train.add_argument("--role", help=ROLE_HELP)
    _add_aws_flags(train)
    add_hyperparameter_flags(train)
    train.set_defaults(handler=cmd_train)

    crossval = commands.add_parser(
        "crossval",
        help="k-fold cross-validation of the recipe on train/ (never test/), and how much a "
        "test set of a given size moves each figure",
    )
    crossval.add_argument("--dataset", help=dataset_help)
    add_crossval_flags(crossval)
    crossval.set_defaults(handler=cmd_crossval)

    evaluate = commands.add_parser("evaluate", help="evaluate a model on a <class>/<image> folder")
    evaluate.add_argument("folder", type=Path)
    evaluate.add_argument("--model", type=Path, help="a model folder (default: the model the service serves)")
    evaluate.add_argument("--threshold", type=arguments.probability, default=DEFAULT_THRESHOLD)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=cmd_evaluate)

    serve = commands.add_parser("serve", help="run the model server in the foreground (SageMaker contract)")
    serve.add_argument(
        "--model",
        type=Path,
        help="a model folder (default: /opt/ml/model in a SageMaker container, else the current model)",
    )
    serve.add_argument("--host", default=os.environ.get("SCONES_SERVE_HOST", "127.0.0.1"))
    serve.add_argument(
        "--port",
        type=arguments.port,
        default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
        help="default: SAGEMAKER_BIND_TO_PORT (set by SageMaker in multi-container hosting), else 8080",
    )
    serve.add_argument("--name", default=DEFAULT_ENDPOINT_NAME, help="endpoint name for the runtime route")
    serve.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="onnxruntime threads per request (default: every core; the embedded stack's endpoint uses 1)",
    )
    serve.set_defaults(handler=cmd_serve)

    up = commands.add_parser("up", help="run the local stack in the foreground until Ctrl-C")
    up.add_argument(
        "--port", type=arguments.port, default=4566, help="the AWS endpoint's port on 127.0.0.1 (0: any free)"
    )
    up.add_argument(
        "--threshold",
        type=arguments.probability,
        default=DEFAULT_THRESHOLD,
        help=f"accept results at or above this confidence, review the rest (default {DEFAULT_THRESHOLD})",
    )
    up.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default="INFO", help="the functions' log level"
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        help="keep the stack's data here across restarts (default: $SCONES_HOME/stack)",
    )
    up.add_argument("--ephemeral", action="store_true", help="keep nothing: start empty, save nothing")
    up.set_defaults(handler=cmd_up)

    submit = commands.add_parser("submit", help="upload images into the inbox (local stack or AWS)")
    submit.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    _add_bucket_flags(submit)
    submit.add_argument("--prefix", default="inbox", help="key prefix (default: inbox)")
    submit.add_argument("--endpoint-url", help="default: $AWS_ENDPOINT_URL, else AWS itself")
    submit.add_argument("--wait", action="store_true", help="wait for each upload's outcome and print it")
    submit.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait with --wait (default 120)"
    )
    submit.set_defaults(handler=cmd_submit)

    metrics = commands.add_parser("metrics", help="the service's CloudWatch metrics over a window")
    metrics.add_argument(
        "--since", default="1h", type=_duration, help="how far back: 30m, 1h, 2d (default 1h)"
    )
    metrics.add_argument("--endpoint-url", help="default: $AWS_ENDPOINT_URL, else AWS itself")
    metrics.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    metrics.set_defaults(handler=cmd_metrics)

    review = commands.add_parser("review", help="label the images in the review queue, one by one")
    review.add_argument("--endpoint-url", help="default: $AWS_ENDPOINT_URL, else AWS itself")
    review.add_argument(
        "--queue-url", help="default: the local stack's review queue, else --stack-name's (AWS)"
    )
    review.add_argument(
        "--stack-name", default=DEFAULT_STACK_NAME, help=f"the deployed stack (default: {DEFAULT_STACK_NAME})"
    )
    review.add_argument("--limit", type=int, help="stop after this many items")
    review.add_argument("--web", action="store_true", help="serve a review page on 127.0.0.1 instead")
    review.add_argument(
        "--port", type=arguments.port, default=8765, help="the review page's port (with --web)"
    )
    review.add_argument("--reviewer", help="your name on the labels (default: the login name)")
    review.add_argument(
        "--thumbnails", type=Path, default=Path("review-thumbnails"), help="where thumbnails are written"
    )
    review.set_defaults(handler=cmd_review)

    labels = commands.add_parser("labels", help="the labels people gave in review")
    label_commands = labels.add_subparsers(dest="labels_command", required=True, metavar="COMMAND")
    export = label_commands.add_parser("export", help="write the labeled images as DIR/<class>/<image>")
    export.add_argument("out", type=Path, metavar="DIR")
    _add_bucket_flags(export)
    export.add_argument("--endpoint-url", help="default: $AWS_ENDPOINT_URL, else AWS itself")
    export.add_argument("--include-neither", action="store_true", help="also write DIR/neither/")
    export.set_defaults(handler=cmd_labels_export)

    report = commands.add_parser("report", help="plots and an HTML page of recent outcomes")
    report.add_argument(
        "--last",
        type=arguments.at_least(1, "outcome"),
        default=200,
        help="how many recent outcomes (default 200)",
    )
    report.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report)")
    _add_bucket_flags(report)
    report.add_argument("--endpoint-url", help="default: $AWS_ENDPOINT_URL, else AWS itself")
    report.set_defaults(handler=cmd_report)

    deploy = commands.add_parser("deploy", help="deploy the stack and/or a model's SageMaker endpoint")
    deploy.add_argument("--artifacts-bucket", help="deploy the stack: the S3 bucket for packaged code")
    deploy.add_argument(
        "--threshold",
        type=arguments.probability,
        help=f"the stack's confidence threshold (default: kept on an update, {DEFAULT_THRESHOLD} when new)",
    )
    deploy.add_argument("--alarm-email", help="subscribe this address to the stack's alarms")
    deploy.add_argument("--model-data", help="deploy the endpoint: s3://.../model.tar.gz of a training job")
    deploy.add_argument("--serving-image", help="the model server's image URI (Dockerfile)")
    deploy.add_argument("--role", help=ROLE_HELP)
    deploy.add_argument("--version", help="the model version (default: the training job's name)")
    deploy.add_argument("--endpoint-name", help=ENDPOINT_NAME_HELP)
    hosting = deploy.add_mutually_exclusive_group()
    hosting.add_argument(
        "--serverless",
        action="store_true",
        default=None,
        help="SageMaker Serverless Inference (default: the endpoint's current hosting, else real-time)",
    )
    hosting.add_argument("--real-time", dest="serverless", action="store_false", help="a real-time instance")
    deploy.add_argument(
        "--capture-percent",
        type=arguments.percentage,
        help="share of requests SageMaker's data capture keeps, 0: none (default: the endpoint's, else 20)",
    )
    _add_aws_flags(deploy)
    deploy.set_defaults(handler=cmd_deploy)

    destroy = commands.add_parser("destroy", help="delete the endpoint, models, stack (and data if asked)")
    destroy.add_argument("--endpoint-name", help=ENDPOINT_NAME_HELP)
    destroy.add_argument("--delete-data", action="store_true", help="also empty the data bucket")
    _add_aws_flags(destroy)
    destroy.set_defaults(handler=cmd_destroy)

    models = commands.add_parser("models", help="list, promote or roll back the locally served model")

    def add_registry_flags(command: argparse.ArgumentParser) -> None:
        _add_bucket_flags(command)
        command.add_argument(
            "--endpoint-url", help="AWS endpoint for the registry (default $AWS_ENDPOINT_URL)"
        )

    add_registry_flags(models)  # the options go before or after the subcommand:
    registry = argparse.ArgumentParser(add_help=False)
    add_registry_flags(registry)
    for action in registry._actions:  # after it, without defaults that would undo the ones before it
        action.default = argparse.SUPPRESS
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    model_commands.add_parser(
        "list", parents=[registry], help="every published version; * marks the served one"
    )
    promote = model_commands.add_parser(
        "promote", parents=[registry], help="serve VERSION (the endpoint swaps without downtime)"
    )
    promote.add_argument("version", metavar="VERSION")
    model_commands.add_parser(
        "rollback", parents=[registry], help="serve the version served before the current one again"
    )
    models.set_defaults(handler=cmd_models)

    replay = commands.add_parser(
        "replay", help="re-drive uploads that failed for a reason outside the upload"
    )
    _add_bucket_flags(replay)
    replay.add_argument("--endpoint-url", help="default: $AWS_ENDPOINT_URL, else AWS itself")
    replay.add_argument(
        "--reason",
        action="append",
        type=_reason_code,
        help="replay failures with this reason code (repeatable; default: the infrastructure's failures)",
    )
    replay.add_argument("--wait", action="store_true", help="wait for the replayed runs to finish")
    replay.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait with --wait (default 300)"
    )
    replay.set_defaults(handler=cmd_replay)

    demo = commands.add_parser("demo", help="the one-shot main job on the embedded local default")
    demo.add_argument("--dataset", help=dataset_help)
    demo.add_argument("--threshold", type=arguments.probability, default=DEFAULT_THRESHOLD)
    demo.add_argument("--summary", type=Path, help="also write the summary as JSON here")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "region") and not args.region:
        from service.sagemaker_jobs import default_region

        args.region = default_region()
    try:
        code: int = args.handler(args)
    except NoModelError as error:
        print(f"scones: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a clear line, not a traceback, for what a user can fix
        message = user_error(error)
        if message is None:
            raise
        print(f"scones {args.command}: {message}", file=sys.stderr)
        return 1
    return code


def user_error(error: Exception) -> str | None:
    """One line for the errors a user meets (a wrong path, a stack that is not running, a missing
    bucket or queue, bad data); None for anything else, which is a bug and keeps its traceback."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    from service.local_stack import DataDirInUse
    from service.sagemaker_jobs import SettingsError
    from training.crossval import CrossValidationError
    from training.staging import StagingError

    if isinstance(error, NoCredentialsError) and not os.environ.get("AWS_ENDPOINT_URL"):
        return (
            f"{error}: with no AWS_ENDPOINT_URL this talks to AWS itself (for the local stack, export"
            " what `scones up` prints: AWS_ENDPOINT_URL and any key pair)"
        )
    if isinstance(error, ValueError) and str(error).startswith("Invalid endpoint"):
        return f"{error}: an endpoint URL starts with its scheme, e.g. http://127.0.0.1:4566"
    if isinstance(error, EndpointConnectionError):
        return f"{error} (is the stack running? `scones up` prints the AWS_ENDPOINT_URL to use)"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        return f"{code}: {error.response.get('Error', {}).get('Message') or error}"
    known = (
        Boto3Error,
        BotoCoreError,
        OSError,
        StagingError,
        SettingsError,
        DataDirInUse,
        CrossValidationError,
    )
    if isinstance(error, known):
        # a file system error as `path: reason`, not Python's "[Errno 17] File exists: 'path'"
        path, reason = getattr(error, "filename", None), getattr(error, "strerror", None)
        return f"{path}: {reason}" if path and reason else str(error)
    return None


if __name__ == "__main__":
    sys.exit(main())
