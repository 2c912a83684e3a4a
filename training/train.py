"""Training entry point, SageMaker-compatible and runnable as a plain local process.

SageMaker runs `train.py --epochs 6 ...` with `SM_CHANNEL_TRAIN`, `SM_CHANNEL_TEST` and
`SM_MODEL_DIR` set; locally the same values come from flags. The validation split is carved from
the training folder (stratified, seeded), or is the `validation` channel when one is given; `test`
is only evaluated, never used for any choice.
Output in the model folder: `model.onnx` (calibrated probabilities in label order, flip TTA and the
seed ensemble baked in), `metadata.json`, and `evaluation.json` (per-image probabilities).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scones.datasets import LabeledImage, read_labeled_folder
from scones.evaluation import DEFAULT_THRESHOLD, summarize
from scones.labels import LABELS
from scones.model_metadata import ONNX_FILE, ModelMetadata, file_sha256
from scones.preprocessing import DEFAULT_CONFIG, PreprocessConfig, model_input, thumbnail

Pixels = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Hyperparameters:
    """The training recipe; every field is a `--flag` (SageMaker passes hyperparameters as flags)."""

    variant: str = "lite0"
    image_size: int = DEFAULT_CONFIG.input_size
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    freeze_blocks: int = 4  # keep the stem and this many first blocks at their ImageNet weights
    ema_decay: float = 0.98  # 0: off; else evaluate an exponential moving average of the weights
    recalibrate_bn: bool = True  # recompute BatchNorm statistics on the final weights
    seeds: str = "0"
    val_fraction: float = 0.1
    split_seed: int = 1234
    flip_tta: bool = True
    threads: int = 0  # 0: all cores
    limit_per_class: int = 0  # 0: all images; small values make quick smoke runs

    @property
    def seed_list(self) -> list[int]:
        return [int(seed) for seed in str(self.seeds).split(",") if seed.strip()]


@dataclass(frozen=True)
class Split:
    pixels: Pixels  # (N, 32, 32, 3)
    labels: npt.NDArray[np.int64]
    paths: list[str]


def load_split(folder: Path, limit_per_class: int | None = None) -> Split:
    """A `<class>/<image>` folder through the serving path's thumbnail step (identical pixels)."""
    images: list[LabeledImage] = read_labeled_folder(folder, limit_per_class=limit_per_class)
    pixels = np.stack([np.asarray(thumbnail(image.data), dtype=np.uint8) for image in images])
    return Split(
        pixels, np.array([image.label for image in images]), [image.relative_path for image in images]
    )


def validation_mask(labels: npt.NDArray[np.int64], fraction: float, seed: int) -> npt.NDArray[np.bool_]:
    """Which images (in the folder's sorted order) the stratified, seeded carve holds out for validation."""
    rng = np.random.default_rng(seed)
    validation: list[int] = []
    for label in range(len(LABELS)):
        members = np.flatnonzero(labels == label)
        count = max(1, round(len(members) * fraction)) if fraction > 0 else 0
        validation.extend(rng.permutation(members)[:count].tolist())
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[validation] = True
    return is_val


def subset(split: Split, mask: npt.NDArray[np.bool_]) -> Split:
    """The images of `split` where `mask` is true, in order."""
    paths = [path for path, keep in zip(split.paths, mask, strict=True) if keep]
    return Split(split.pixels[mask], split.labels[mask], paths)


def carve_validation(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Stratified, seeded train/validation split of the training folder."""
    is_val = validation_mask(split.labels, fraction, seed)
    return subset(split, ~is_val), subset(split, is_val)


def carve_folder(
    train_dir: Path,
    fit_dir: Path,
    validation_dir: Path,
    *,
    fraction: float,
    seed: int,
    limit_per_class: int | None = None,
) -> None:
    """Copy a training folder's images into `fit_dir` and `validation_dir` by the very carve `train`
    makes with the same fraction and seed: the images a model trained on `train_dir` never saw."""
    images = read_labeled_folder(train_dir, limit_per_class=limit_per_class)
    is_val = validation_mask(np.array([image.label for image in images]), fraction, seed)
    for image, held_out in zip(images, is_val, strict=True):
        target = (validation_dir if held_out else fit_dir) / image.relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.data)


def augment(pixels: Pixels, rng: np.random.Generator) -> Pixels:
    """Pad-4 reflect random crop and horizontal flip, on the 32x32 thumbnail before the shared upscale."""
    padded = np.pad(pixels, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    top, left = rng.integers(0, 9, size=2)
    crop = padded[top : top + 32, left : left + 32]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def batch_inputs(pixels: Sequence[Pixels] | Pixels, config: PreprocessConfig) -> Any:
    """A batch tensor in channels-last memory: about twice as fast on CPU for these depthwise convs."""
    import torch

    batch = torch.from_numpy(np.stack([model_input(p, config) for p in pixels]))
    return batch.contiguous(memory_format=torch.channels_last)


def predict_logits(model: Any, split: Split, config: PreprocessConfig, batch: int = 100) -> Any:
    import torch

    model.eval()
    with torch.inference_mode():
        chunks = [
            model.logits(batch_inputs(split.pixels[i : i + batch], config))
            for i in range(0, len(split.labels), batch)
        ]
    return torch.cat(chunks)


def train_member(
    seed: int,
    train: Split,
    validation: Split,
    hp: Hyperparameters,
    config: PreprocessConfig,
    *,
    progress: bool,
) -> Any:
    """Fine-tune one pretrained member: AdamW, half-epoch linear warmup, cosine decay."""
    import torch
    from torch.nn import functional
    from tqdm import tqdm

    from training.model import Ensemble, WeightAverage, build_member, freeze_prefix, recalibrate_batch_norm

    torch.manual_seed(seed)
    random.seed(seed)
    rng = np.random.default_rng(seed)
    member = build_member(hp.variant, num_classes=len(LABELS), image_size=hp.image_size)
    member = member.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    freeze_prefix(member, hp.freeze_blocks)
    trainable = [parameter for parameter in member.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=hp.lr, weight_decay=hp.weight_decay)
    steps_per_epoch = math.ceil(len(train.labels) / hp.batch_size)
    total, warmup = hp.epochs * steps_per_epoch, max(1, steps_per_epoch // 2)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    average = WeightAverage(member, hp.ema_decay) if hp.ema_decay > 0 else None
    single = Ensemble([member], flip_tta=False)
    for epoch in range(hp.epochs):
        member.train()
        order = rng.permutation(len(train.labels))
        bar = tqdm(
            range(0, len(order), hp.batch_size),
            desc=f"seed {seed} epoch {epoch + 1}/{hp.epochs}",
            disable=not (progress and sys.stderr.isatty()),
            leave=True,
            file=sys.stderr,
        )
        epoch_started = time.perf_counter()
        seen, loss_sum = 0, 0.0
        for start in bar:
            index = order[start : start + hp.batch_size]
            inputs = batch_inputs([augment(train.pixels[i], rng) for i in index], config)
            targets = torch.from_numpy(train.labels[index])
            loss = functional.cross_entropy(member(inputs), targets, label_smoothing=hp.label_smoothing)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.update(member)
            seen += len(index)
            loss_sum += float(loss.item()) * len(index)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        summary = f"loss={loss_sum / seen:.3f}"
        if len(validation.labels):
            logits = predict_logits(single, validation, config)
            accuracy = float((logits.argmax(1).numpy() == validation.labels).mean())
            # one member, no weight average or flip: not the model's figure (`val_acc=`, at the end)
            summary += f" epoch_val_acc={accuracy:.3f}"
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", val_acc=f"{accuracy:.3f}")
            bar.refresh()
        if progress and bar.disable:  # logs (SageMaker, CI): one line per epoch instead of a bar
            elapsed = time.perf_counter() - epoch_started
            print(f"seed {seed} epoch {epoch + 1}/{hp.epochs} {summary} ({elapsed:.1f} s)", file=sys.stderr)
        bar.close()
    if average is not None:
        member = average.model
    if hp.recalibrate_bn:
        # BatchNorm's running statistics lag the weights (momentum 0.01): measure them afresh.
        batches = (batch_inputs(train.pixels[i : i + 100], config) for i in range(0, len(train.labels), 100))
        recalibrate_batch_norm(member, batches)
    member.eval()
    return member


def export_onnx(model: Any, path: Path, input_size: int) -> None:
    """Export with a dynamic batch axis; inference needs onnxruntime only."""
    import torch

    model.eval()
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings():
        # the TorchScript exporter notes an optimisation it skips (the flip's Slice): nothing to act on
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["probabilities"],
            dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def train(
    train_dir: Path,
    model_dir: Path,
    hp: Hyperparameters,
    *,
    test_dir: Path | None = None,
    validation_dir: Path | None = None,
    progress: bool = True,
) -> ModelMetadata:
    """Train, calibrate, export and evaluate; returns the metadata written beside the model.

    The validation split is carved from `train_dir` unless `validation_dir` is given (retraining
    passes the carve the serving model held out, so both are judged on images neither trained on).
    """
    import torch

    from training.model import Ensemble, fit_temperature, pretrained_weights_path

    pretrained_weights_path(hp.variant)  # an unknown variant fails now, not after loading the data
    started = time.perf_counter()
    torch.set_num_threads(hp.threads or os.cpu_count() or 1)
    config = PreprocessConfig(input_size=hp.image_size)
    limit = hp.limit_per_class or None
    # with a validation folder given, `limit_per_class` was applied by the carve that made it (the
    # folder to train on holds the carve's rest plus reviewed labels: all of it is trained on)
    full = load_split(train_dir, None if validation_dir else limit)
    if validation_dir is None:
        train_split, validation = carve_validation(full, hp.val_fraction, hp.split_seed)
    else:
        train_split, validation = full, load_split(validation_dir)
        full = Split(
            np.concatenate([full.pixels, validation.pixels]),
            np.concatenate([full.labels, validation.labels]),
            [*full.paths, *validation.paths],  # a carve's two parts hash as the folder they came from
        )
    members = [
        train_member(seed, train_split, validation, hp, config, progress=progress) for seed in hp.seed_list
    ]
    ensemble = Ensemble(members, flip_tta=hp.flip_tta)
    temperature = 1.0
    if len(validation.labels):
        temperature = fit_temperature(
            predict_logits(ensemble, validation, config), torch.from_numpy(validation.labels)
        )
    ensemble.get_buffer("temperature").fill_(temperature)
    train_seconds = time.perf_counter() - started

    model_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = model_dir / ONNX_FILE
    export_onnx(ensemble, onnx_path, hp.image_size)

    def probabilities(split: Split) -> npt.NDArray[np.float64]:
        logits = predict_logits(ensemble, split, config)
        result: npt.NDArray[np.float64] = torch.softmax(logits / temperature, dim=1).double().numpy()
        return result

    metrics: dict[str, Any] = {"train_seconds": round(train_seconds, 1), "n_train": len(train_split.labels)}
    evaluation: dict[str, Any] = {}
    splits = {"validation": validation}
    if test_dir is not None:
        splits["test"] = load_split(test_dir)  # always the whole test set
    for name, split in splits.items():
        if len(split.labels):
            probs = probabilities(split)
            metrics[name] = summarize(probs, split.labels, DEFAULT_THRESHOLD)
            print(metric_line("val" if name == "validation" else name, metrics[name]), file=sys.stderr)
            evaluation[name] = [
                {"path": path, "label": int(label), "probabilities": [round(float(p), 7) for p in row]}
                for path, label, row in zip(split.paths, split.labels, probs, strict=True)
            ]
    created = datetime.now(UTC)
    onnx_sha = file_sha256(onnx_path)
    metadata = ModelMetadata(
        version=f"{created:%Y%m%d-%H%M%S}-{onnx_sha[:8]}",
        input_size=hp.image_size,
        mean=config.mean,
        std=config.std,
        temperature=temperature,
        architecture=(
            f"efficientnet-{hp.variant} x{len(members)} (seeds {hp.seeds})"
            f"{' + flip TTA' if hp.flip_tta else ''}, ImageNet-pretrained, fine-tuned at {hp.image_size} px"
        ),
        onnx_sha256=onnx_sha,
        training_data_sha256=dataset_sha256(full),
        validation_data_sha256=dataset_sha256(validation),
        created_at=created.isoformat(timespec="seconds"),
        hyperparameters=asdict(hp),
        metrics=metrics,
        training_environment=training_environment(),
    )
    metadata.write(model_dir)
    (model_dir / "evaluation.json").write_text(json.dumps(evaluation) + "\n")
    return metadata


def training_environment() -> dict[str, str]:
    """The versions that decide the model's pixels and numbers, for the record beside it."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for package in ("torch", "pillow", "numpy", "onnx"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def metric_line(prefix: str, summary: dict[str, Any]) -> str:
    """`test_acc=0.9650 test_coverage=...`: the log line SageMaker's metric definitions read."""
    values = {key: summary[key] for key in ("accuracy", "coverage", "accepted_accuracy", "ece")}
    short = {"accuracy": "acc", "accepted_accuracy": "accepted_acc"}
    return " ".join(
        f"{prefix}_{short.get(key, key)}={value:.4f}" for key, value in values.items() if value is not None
    )


def dataset_sha256(split: Split) -> str:
    """Identifies the training data: labels and pixels of every image, in path order."""
    digest = hashlib.sha256()
    for path, label, pixels in sorted(
        zip(split.paths, split.labels, split.pixels, strict=True), key=lambda t: t[0]
    ):
        digest.update(f"{path}\t{label}\t".encode() + pixels.tobytes())
    return digest.hexdigest()


def add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """One `--flag` per Hyperparameters field, defaulting to the recipe."""
    group = parser.add_argument_group("hyperparameters (the recipe's defaults unless given)")
    for name, value in asdict(Hyperparameters()).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            group.add_argument(
                flag, type=lambda text: str(text).lower() in ("1", "true", "yes"), default=value
            )
        else:
            group.add_argument(flag, type=type(value), default=value)


def hyperparameters_from(args: argparse.Namespace) -> Hyperparameters:
    return Hyperparameters(**{name: getattr(args, name) for name in asdict(Hyperparameters())})


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--train", type=Path, default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--test", type=Path, default=os.environ.get("SM_CHANNEL_TEST"))
    parser.add_argument(
        "--validation",
        type=Path,
        default=os.environ.get("SM_CHANNEL_VALIDATION"),
        help="a validation folder instead of the carve from --train",
    )
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("SM_MODEL_DIR", "model")))
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_hyperparameter_flags(parser)
    args = parser.parse_args(argv)
    if args.train is None:
        parser.error("--train (or SM_CHANNEL_TRAIN) is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    hp = hyperparameters_from(args)
    metadata = train(
        args.train,
        args.model_dir,
        hp,
        test_dir=args.test,
        validation_dir=args.validation,
        progress=not args.no_progress,
    )
    print(
        json.dumps(
            {"version": metadata.version, "model_dir": str(args.model_dir), "metrics": metadata.metrics},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
