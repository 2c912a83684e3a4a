"""training/retrain.py: fold the reviewed labels into training, gate the candidate against the serving model,
and promote it only if it is not worse.

Steps: export the reviewed labels (`labels/` + `labeled/<class>/` in the data bucket; "neither" kept
out and counted, and so are images of the fixed test set, e.g. the demo's uploads); hold out about
one label in five (by image fingerprint, so a label keeps its part as labels accumulate); carve
from `train/` the validation split the serving model held out; train a candidate on the rest of
`train/` plus the other labels, validated on that carve; evaluate both models on the gate split
(that carve plus the held-out labels: images neither trained on) and, for the record only, on the
fixed `test/` split; promote (publish and make current: the local endpoint swaps it in without
dropping a request) only when the candidate's accuracy, coverage and accuracy among accepted at the
threshold on the gate split are each at least the serving model's minus `--tolerance`.
`--dry-run` decides without promoting; `--min-new-labels N` does nothing until N labels exist that
no model in the store was trained with.
Prints the side-by-side table and the decision.
Every candidate is recorded in the model registry (the data bucket's `models/registry/`): pending
when trained, then approved or rejected by the gate, serving when promoted (the model it replaces:
retired).

    python training/retrain.py [--dataset SRC] [--endpoint-url URL] [--bucket B] [--dry-run]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

if __package__ in (None, ""):  # `python training/retrain.py`: the repository root holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scones.datasets import IMAGE_SUFFIXES
from scones.evaluation import DEFAULT_THRESHOLD, evaluate_folder
from scones.inference import OnnxClassifier
from scones.labels import LABELS
from scones.model_metadata import ModelFileMismatch, ModelMetadata
from scones.model_store import ModelStore, NoModelError
from scones.preprocessing import FORMAT_SUFFIXES, ImageRejected, decode, thumbnail_of
from scones.registry import ModelRegistry, Status, entry_from, record_promotion

GATED: tuple[str, ...] = ("accuracy", "coverage", "accepted_accuracy")
GATE: Final = "gate"  # the split the decision is made on


@dataclass
class Decision:
    promote: bool
    passed: bool  # the gate's verdict (a --dry-run passes without promoting)
    reasons: list[str]
    candidate: dict[str, Any]
    serving: dict[str, Any]
    labels: dict[str, int] = field(default_factory=dict)
    candidate_version: str = ""
    serving_version: str = ""


def split_labels(
    labels_dir: Path,
    train_out: Path,
    holdout_out: Path,
    every: int = 5,
    exclude: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """About one labeled image in `every` to the hold-out, the rest to training; counts per part.

    The part follows from the image's fingerprint (its thumbnail pixels), so an image keeps its part
    as labels accumulate: a later candidate is never judged on an image an earlier one trained on.
    Images whose fingerprint is in `exclude` (the fixed test set's) go to neither, nor do files that
    are no supported image (counted as unreadable).
    """
    counts = {"train": 0, "holdout": 0, "test_images": 0, "unreadable": 0}
    for name in LABELS:
        files = sorted((labels_dir / name).glob("*")) if (labels_dir / name).is_dir() else []
        for path in files:
            image = read_image(path)
            if image is None:
                counts["unreadable"] += 1
                continue
            fingerprint, suffix = image
            if fingerprint in exclude:
                counts["test_images"] += 1
                continue
            part = "holdout" if int(fingerprint[:8], 16) % every == every - 1 else "train"
            target = (holdout_out if part == "holdout" else train_out) / name
            target.mkdir(parents=True, exist_ok=True)
            keep = path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else suffix
            shutil.copy2(path, target / f"reviewed-{path.stem}{keep}")
            counts[part] += 1
    neither = labels_dir / "neither"
    counts["neither"] = sum(1 for _ in neither.glob("*")) if neither.is_dir() else 0
    return counts


def read_image(path: Path) -> tuple[str, str] | None:
    """An image file's fingerprint (SHA-256 of its 32x32 thumbnail pixels: the same picture
    re-encoded or staged anew matches) and its format's file suffix; None if it is no supported image."""
    try:
        image = decode(path.read_bytes())
        pixels = np.asarray(thumbnail_of(image), dtype=np.uint8)
    except ImageRejected:
        return None
    return hashlib.sha256(pixels.tobytes()).hexdigest(), FORMAT_SUFFIXES[str(image.format)]


def merged_folder(out: Path, *folders: Path) -> Path:
    """One `<class>/<image>` folder holding the images of all `folders`."""
    for folder in folders:
        for name in LABELS:
            if (folder / name).is_dir():
                (out / name).mkdir(parents=True, exist_ok=True)
                for path in (folder / name).iterdir():
                    shutil.copy2(path, out / name / path.name)
    return out


def evaluate(model_dir: Path, folders: dict[str, Path], threshold: float) -> dict[str, Any]:
    classifier = OnnxClassifier(model_dir, threads=2)
    return {
        name: evaluate_folder(folder, classifier, threshold=threshold)
        for name, folder in folders.items()
        if any((folder / label).is_dir() and any((folder / label).iterdir()) for label in LABELS)
    }


def gate(candidate: dict[str, Any], serving: dict[str, Any], tolerance: float) -> tuple[bool, list[str]]:
    """Not worse on the gate split, metric by metric (within `tolerance`).

    The gate split is the validation carve the serving model held out plus the held-out labels:
    images neither model trained on. `test/` is reported beside it, never decided on.
    A metric the candidate lacks where the serving model has one (accepted accuracy when it accepts
    nothing) counts as worse; one neither has is skipped.
    """
    reasons = []
    for metric in GATED:
        new, old = candidate[GATE].get(metric), serving[GATE].get(metric)
        if old is None:
            continue
        if new is None:
            reasons.append(f"{GATE} {metric}: candidate has none vs serving {old:.4f} (WORSE)")
            continue
        verdict = "ok" if new >= old - tolerance else "WORSE"
        reasons.append(
            f"{GATE} {metric}: candidate {new:.4f}{_counted(candidate[GATE], metric)} vs serving "
            f"{old:.4f}{_counted(serving[GATE], metric)} ({verdict})"
        )
    return all(not reason.endswith("(WORSE)") for reason in reasons), reasons


def _counted(report: dict[str, Any], metric: str) -> str:
    """` (k/m)`: the images behind a rate (a gate of a hundred images moves in steps of 0.01)."""
    n, coverage = report.get("n"), report.get("coverage")
    if not isinstance(n, int) or not isinstance(coverage, float):
        return ""
    accepted = round(coverage * n)
    denominator = {"accuracy": n, "coverage": n, "accepted_accuracy": accepted}[metric]
    return f" ({round(report[metric] * denominator)}/{denominator})" if denominator else ""


def held_out_by(serving: ModelMetadata, recipe: Any) -> dict[str, Any]:
    """The carve of `train/` the serving model held out: its own recipe's, else `recipe`'s."""
    trained_with = serving.hyperparameters or {}
    return {
        "fraction": float(trained_with.get("val_fraction", recipe.val_fraction)),
        "seed": int(trained_with.get("split_seed", recipe.split_seed)),
        "limit_per_class": int(trained_with.get("limit_per_class", recipe.limit_per_class)) or None,
    }


class HeldOutMismatch(ValueError):
    """The carve rebuilt from `train/` is not the set the serving model was validated on."""


def check_held_out(serving: ModelMetadata, validation_dir: Path) -> None:
    """Refuse a gate on images the serving model may have trained on: the rebuilt carve must hash to
    the validation set its metadata records (metadata from before the hash was recorded is trusted)."""
    from training.train import dataset_sha256, load_split

    if not serving.validation_data_sha256:
        return
    if dataset_sha256(load_split(validation_dir)) != serving.validation_data_sha256:
        raise HeldOutMismatch(
            f"the validation carve rebuilt from train/ is not the one model {serving.version} was "
            "validated on (train/ changed, or the model came from elsewhere): the gate would judge it "
            "on images it trained on; retrain from the data it was trained on"
        )


def table(decision: Decision) -> str:
    width = max(12, len(decision.serving_version), len(decision.candidate_version)) + 2
    rows = [
        f"{'':28}{'serving':>{width}}{'candidate':>{width}}",
        f"{'version':28}{decision.serving_version:>{width}}{decision.candidate_version:>{width}}",
    ]
    for part in (GATE, "holdout", "test"):
        for metric in ("n", "accuracy", "coverage", "accepted_accuracy", "ece"):
            old = decision.serving.get(part, {}).get(metric)
            new = decision.candidate.get(part, {}).get(metric)
            if old is None and new is None:
                continue
            shown = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in (old, new)]
            rows.append(f"{part + ' ' + metric:28}{shown[0]:>{width}}{shown[1]:>{width}}")
    labels = decision.labels
    rows += [
        "",
        f"reviewed labels: {labels.get('train', 0)} trained on, {labels.get('holdout', 0)} held out, "
        f"{labels.get('neither', 0)} neither, {labels.get('test_images', 0)} test-set images kept out, "
        f"{labels.get('unreadable', 0)} unreadable",
        f"{GATE}: the validation carve the serving model held out + the held-out labels; test: reported only",
        *decision.reasons,
        f"decision: {'PROMOTE' if decision.promote else 'keep the serving model'}",
    ]
    return "\n".join(rows)


def retrain(
    *,
    base_train: Path,
    test_dir: Path,
    labels_dir: Path,
    store: ModelStore,
    hyperparameters: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
    tolerance: float = 0.0,
    dry_run: bool = False,
    min_new_labels: int = 0,
    progress: bool = False,
    registry: ModelRegistry | None = None,
    trainer: Callable[..., ModelMetadata] | None = None,
    serving_dir: Path | None = None,
    promote_model: Callable[[Path, ModelMetadata], None] | None = None,
    still_serving: Callable[[], bool] | None = None,
) -> Decision | None:
    """Train a candidate on train + reviewed labels; promote it if it passes the gate.

    Locally by default: `training.train.train`, the store's current model as the serving one, and
    promotion by making the candidate current. On AWS, `trainer` is a `SageMakerTrainer` (its
    `model_data_url` goes to the registry), `serving_dir` the endpoint's model unpacked, and
    `promote_model` updates the endpoint, and `still_serving` says whether the endpoint still serves the
    model the candidate was compared with (locally: the store's current version).
    """
    from training.train import Hyperparameters, carve_folder, train

    recipe = hyperparameters or Hyperparameters()
    with tempfile.TemporaryDirectory(prefix="scones-retrain-") as scratch:
        root = Path(scratch)
        test_images = frozenset(image_hashes(test_dir))
        counts = split_labels(labels_dir, root / "reviewed-train", root / "holdout", exclude=test_images)
        used = image_hashes(root / "reviewed-train", root / "holdout")
        new = len(used - labels_seen(store))
        if new < min_new_labels:
            print(f"{new} new reviewed labels ({len(used)} in all), under {min_new_labels}: nothing to do")
            return None
        serves_locally = serving_dir is None
        serving_dir = serving_dir or store.current_path()
        serving = ModelMetadata.read(serving_dir)
        validation = root / "validation"
        held_out = held_out_by(serving, recipe)
        carve_folder(base_train, root / "base-fit", validation, **held_out)
        check_held_out(serving, validation)
        # the candidate is validated on that carve: its metadata must say so (the next retrain's carve)
        recipe = replace(
            recipe,
            val_fraction=held_out["fraction"],
            split_seed=held_out["seed"],
            limit_per_class=held_out["limit_per_class"] or 0,
        )
        training = merged_folder(root / "train", root / "base-fit", root / "reviewed-train")
        candidate_dir = root / "candidate"
        metadata = (trainer or train)(
            training,
            candidate_dir,
            recipe,
            test_dir=test_dir,
            validation_dir=validation,
            progress=progress,
        )
        gate_split = merged_folder(root / GATE, validation, root / "holdout")
        folders = {GATE: gate_split, "holdout": root / "holdout", "test": test_dir}
        candidate_eval = evaluate(candidate_dir, folders, threshold)
        serving_eval = evaluate(serving_dir, folders, threshold)
        promote, reasons = gate(candidate_eval, serving_eval, tolerance)
        held_back = "--dry-run: not promoted" if dry_run else None
        if still_serving is None and serves_locally:

            def still_serving() -> bool:
                return store.current_version() == serving.version

        if promote and not dry_run and still_serving is not None and not still_serving():
            # promoted or rolled back meanwhile: the candidate was never compared with what serves now
            held_back = (
                "the served model changed during training (a promotion or rollback): not promoted "
                "(retrain again to compare with it)"
            )
        decision = Decision(
            promote=promote and held_back is None,
            passed=promote,
            reasons=reasons + ([held_back] if promote and held_back else []),
            candidate=candidate_eval,
            serving=serving_eval,
            labels=counts,
            candidate_version=metadata.version,
            serving_version=serving.version,
        )
        (candidate_dir / LABELS_USED_FILE).write_text(json.dumps(sorted(used)) + "\n")
        # kept in the store either way, for the record and a later `scones models promote`
        store.publish(candidate_dir, make_current=decision.promote and promote_model is None)
        if registry is not None:  # the verdict first: a promotion that fails leaves it recorded
            model_data_url = str(getattr(trainer, "model_data_url", ""))
            record_decision(registry, decision, serving, metadata, model_data_url)
        if decision.promote and promote_model is not None:
            try:
                promote_model(candidate_dir, metadata)
            except Exception as error:
                if registry is not None:
                    registry.set_status(metadata.version, "approved", reason=f"promotion failed: {error}")
                raise
        if decision.promote and registry is not None:
            record_promotion(registry, metadata.version, reason="promoted by retrain.py")
    return decision


LABELS_USED_FILE = "reviewed_labels.json"  # beside a candidate: the fingerprint of each label image it used


def image_hashes(*folders: Path) -> set[str]:
    """The fingerprints of the images under `folders/<class>/`."""
    images = (read_image(path) for folder in folders for path in folder.glob("*/*") if path.is_file())
    return {image[0] for image in images if image is not None}


def labels_seen(store: ModelStore) -> set[str]:
    """The label images some model in the store was trained (or held out) with: not new any more."""
    seen: set[str] = set()
    for version in store.versions():
        used = store.path(version) / LABELS_USED_FILE
        if used.is_file():
            seen.update(json.loads(used.read_text()))
    return seen


def record_decision(
    registry: ModelRegistry,
    decision: Decision,
    serving: ModelMetadata,
    candidate: ModelMetadata,
    model_data_url: str = "",
) -> None:
    """The candidate's way through the registry up to the verdict: pending, then approved or rejected.

    The model it was compared with is what serves: an entry the registry lacks (served before it knew
    it) is added as serving, and one it holds under another status (a rollback by `scones deploy`
    or `scones models rollback`) becomes serving again. The promotion is recorded after it happened.
    """
    known = registry.get(serving.version)
    if known is None:
        registry.register(entry_from(serving), reason="served before the registry knew it")
    if known is None or known.status != "serving":  # and whatever the registry took for serving retires
        record_promotion(registry, serving.version, reason="found serving when retrain.py started")
    registry.register(entry_from(candidate, model_data_url=model_data_url), reason="trained by retrain.py")
    verdict: Status = "approved" if decision.passed else "rejected"
    registry.set_status(candidate.version, verdict, reason="; ".join(decision.reasons))


def sagemaker_engine(args: argparse.Namespace, sagemaker: Any, s3: Any, scratch: Path) -> dict[str, Any]:
    """`retrain()`'s AWS parts: a SageMaker training job, the Model Registry, the serving model (the
    endpoint's, else the local store's current model) and promotion by a new model + endpoint config +
    UpdateEndpoint."""
    from scones.registry import SageMakerRegistry
    from service.sagemaker_jobs import (
        SageMakerSettings,
        SageMakerTrainer,
        download_model,
        endpoint_model_data_url,
        hosting_actions,
        hosting_like,
        run,
    )

    settings = SageMakerSettings(
        role_arn=args.role, bucket=args.bucket, region=args.region, serving_image=args.serving_image
    )
    trainer = SageMakerTrainer(sagemaker, s3, settings)
    registry = SageMakerRegistry(sagemaker, args.model_package_group, serving_image=args.serving_image)
    # the baseline is what the endpoint serves (a `scones deploy` of an older model is a rollback the
    # registry does not see); with no endpoint yet, the local store's current model
    endpoint_at_start = endpoint_model_data_url(sagemaker, args.endpoint_name)
    serving_dir = download_model(s3, endpoint_at_start, scratch) if endpoint_at_start else None

    def still_serving() -> bool:
        """No `scones deploy` or other retrain changed the endpoint's model while the job ran."""
        return bool(endpoint_model_data_url(sagemaker, args.endpoint_name) == endpoint_at_start)

    def promote_model(_: Path, metadata: ModelMetadata) -> None:
        hosting = hosting_like(sagemaker, settings, args.endpoint_name)  # the endpoint's, unchanged
        run(
            hosting_actions(sagemaker, hosting, args.endpoint_name, trainer.model_data_url, metadata.version),
            dry_run=False,
        )

    return {
        "registry": registry,
        "trainer": trainer,
        "serving_dir": serving_dir,
        "promote_model": promote_model,
        "still_serving": still_serving,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from monitoring.review import export_labels
    from service.sagemaker_jobs import ENDPOINT_NAME_HELP, ROLE_HELP
    from training.staging import stage_or_reuse
    from training.train import add_hyperparameter_flags, hyperparameters_from
    from workflow.names import DEFAULT_STACK_NAME, StackNames

    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0].removeprefix("training/retrain.py: ").replace("\n", " ")
    )
    parser.add_argument(
        "--dataset",
        default=os.environ.get("SCONES_DATASET"),
        help="train/ and test/ from (default: $SCONES_DATASET, else what $SCONES_HOME staged before, "
        "else the official archive)",
    )
    parser.add_argument(
        "--bucket",
        help="the data bucket (default: the local stack's with --endpoint-url, else --stack-name's)",
    )
    parser.add_argument(
        "--stack-name", default=DEFAULT_STACK_NAME, help=f"the deployed stack (default: {DEFAULT_STACK_NAME})"
    )
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"))
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--tolerance", type=float, default=0.0, help="how much worse a gated metric may be")
    parser.add_argument(
        "--min-new-labels",
        type=int,
        default=0,
        help="train only with this many labels no stored model has used",
    )
    parser.add_argument("--dry-run", action="store_true", help="decide, but do not promote")
    parser.add_argument("--json", action="store_true")
    aws = parser.add_argument_group("--on sagemaker: train on SageMaker, gate, update the endpoint")
    aws.add_argument("--on", choices=["local", "sagemaker"], default="local", help="where to train")
    aws.add_argument("--role", help=ROLE_HELP)
    aws.add_argument(
        "--region", help="default: the region boto3 uses (AWS_REGION, the profile), else us-east-1"
    )
    aws.add_argument("--serving-image", default="", help="the model server's image in ECR (Dockerfile)")
    aws.add_argument("--endpoint-name", help=ENDPOINT_NAME_HELP)
    aws.add_argument("--model-package-group", default=StackNames().endpoint, help="the Model Registry group")
    add_hyperparameter_flags(parser)
    args = parser.parse_args(argv)
    import boto3

    from service.sagemaker_jobs import data_bucket, default_region, endpoint_name, sagemaker_role

    args.region = args.region or default_region()
    if args.on == "sagemaker" and not args.dry_run and not args.serving_image:
        # checked now: promoting needs it, and it would be missed only after the paid training job
        parser.error("--on sagemaker needs --serving-image (the model server's image in ECR) to promote")

    from scones.model_store import default_home
    from scones.registry import BucketRegistry
    from workflow.names import StackNames

    data_dir = default_home() / "data"
    # with no source named, the data `scones train`/`make demo` staged: retraining needs no download
    staged = stage_or_reuse(args.dataset, data_dir, cache_dir=default_home() / "cache")
    endpoint = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    s3 = boto3.client("s3", region_name=args.region, **endpoint)
    stack = {
        "endpoint_url": args.endpoint_url,
        "stack_name": args.stack_name,
        "cloudformation": lambda: boto3.client("cloudformation", region_name=args.region, **endpoint),
    }
    args.bucket = data_bucket(args.bucket, **stack)
    if args.on == "sagemaker":
        args.role = sagemaker_role(args.role, buckets=[args.bucket], **stack)
        args.endpoint_name = endpoint_name(
            args.endpoint_name, stack_name=args.stack_name, cloudformation=stack["cloudformation"]()
        )
    with (
        tempfile.TemporaryDirectory(prefix="scones-labels-") as labels,
        tempfile.TemporaryDirectory(prefix="scones-serving-") as serving,
    ):
        exported = export_labels(s3, args.bucket, Path(labels), classes=(*LABELS, "neither"))
        print("reviewed labels: " + ", ".join(f"{k} {v}" for k, v in exported.items()))
        engine: dict[str, Any] = {"registry": BucketRegistry(s3, args.bucket)}
        if args.on == "sagemaker":
            sagemaker = boto3.client("sagemaker", region_name=args.region, **endpoint)
            engine = sagemaker_engine(args, sagemaker, s3, Path(serving))
        decision = retrain(
            base_train=staged.split_dir("train"),
            test_dir=staged.split_dir("test"),
            labels_dir=Path(labels),
            store=ModelStore.default(),
            hyperparameters=hyperparameters_from(args),
            threshold=args.threshold,
            tolerance=args.tolerance,
            dry_run=args.dry_run,
            min_new_labels=args.min_new_labels,
            progress=True,
            **engine,
        )
    if decision is None:
        return 0
    if args.json:
        print(
            json.dumps(
                {"promote": decision.promote, "candidate": decision.candidate, "serving": decision.serving},
                default=str,
            )
        )
    else:
        print(table(decision))
    return 0


def run_main(argv: Sequence[str] | None = None) -> int:
    """`main` with the CLI's error handling: one line on stderr for what a user can fix."""
    from service.cli import user_error

    try:
        return main(argv)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        ours = isinstance(error, (HeldOutMismatch, NoModelError, ModelFileMismatch))
        message = str(error) if ours else user_error(error)
        if message is None:
            raise
        print(f"retrain: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(run_main())
