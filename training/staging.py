"""Stage the bicycle/motorcycle data from the official CIFAR-100 archive or a local folder, and upload it.

The output layout is `<out>/{train,test}/<class>/<file>.png` plus `train.lst` and `test.lst`
(`<row in the CIFAR-100 pickle>\t<label>\t<class>/<file>`), the layout SageMaker's image
classification channels use. The class always comes from the CIFAR-100 label, never a file name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from scones.labels import CIFAR100_FINE_LABELS, LABELS

CIFAR100_URL: Final = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5: Final = "eb9058c3a382ffc7106e4002c42a8d85"  # published on the CIFAR page
SPLITS: Final = ("train", "test")
DATASET_ENV: Final = "SCONES_DATASET"


@dataclass(frozen=True)
class StagedImage:
    split: str
    row: int
    label: int
    name: str
    data: bytes

    @property
    def relative_path(self) -> str:
        return f"{LABELS[self.label]}/{self.name}"


@dataclass
class StagedDataset:
    """Where the staged data is, how many images each split has, and a hash that identifies it."""

    root: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    sha256: str = ""

    def split_dir(self, split: str) -> Path:
        return self.root / split


class StagingError(RuntimeError):
    """The source could not be staged (bad checksum, wrong layout, missing files)."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_archive(
    cache_dir: Path, *, url: str = CIFAR100_URL, md5: str = CIFAR100_MD5, timeout_s: float = 60.0
) -> Path:
    """The archive in `cache_dir`, downloaded once and verified against its published MD5."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / Path(url.rsplit("/", 1)[-1] or "archive.tar.gz").name
    if target.is_file() and md5_of(target) == md5:
        return target
    handle, partial_name = tempfile.mkstemp(dir=cache_dir, suffix=".partial")
    partial = Path(partial_name)
    try:
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, TimeoutError) as error:
            raise StagingError(
                f"could not download {url}: {error} (offline? give --dataset DIR or set SCONES_DATASET to a"
                " local copy: a folder in the shared layout or the archive file)"
            ) from None
        actual = md5_of(partial)
        if actual != md5:
            raise StagingError(f"checksum mismatch for {url}: got md5 {actual}, expected {md5}")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _png(pixels: np.ndarray[Any, Any]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def images_from_archive(archive: Path) -> Iterator[StagedImage]:
    """Every bicycle and motorcycle image of the official `cifar-100-python` archive, as PNG."""
    wanted = {fine: LABELS.index(name) for name, fine in CIFAR100_FINE_LABELS.items()}
    with tarfile.open(archive, "r:gz") as tar:
        for split in SPLITS:
            try:
                member = tar.extractfile(f"cifar-100-python/{split}")
            except KeyError:  # tarfile's way of saying the member is absent
                member = None
            if member is None:
                raise StagingError(f"{archive} has no cifar-100-python/{split}")
            # The official archive is a pickle; only open archives whose checksum was verified.
            batch = pickle.load(member, encoding="bytes")
            data, fine_labels, names = batch[b"data"], batch[b"fine_labels"], batch[b"filenames"]
            for row, fine in enumerate(fine_labels):
                if fine in wanted:
                    pixels = np.asarray(data[row], dtype=np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
                    yield StagedImage(split, row, wanted[fine], names[row].decode(), _png(pixels))


def images_from_folder(folder: Path) -> Iterator[StagedImage]:
    """Images of a folder laid out as the shared copy: `<split>.lst` plus `<split>/<class>/<file>`."""
    for split in SPLITS:
        listing = folder / f"{split}.lst"
        if not listing.is_file():
            raise StagingError(
                f"{folder} has no {split}.lst (expected the CIFAR-100 bicycle/motorcycle layout)"
            )
        for number, line in enumerate(listing.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row_text, label_text, relative = line.split("\t")
                row, label_value = int(row_text), float(label_text)  # im2rec writes labels as `1.000000`
                name = Path(relative).name
            except ValueError:
                raise StagingError(f"{listing}:{number}: not `row<TAB>label<TAB>path`: {line!r}") from None
            label = int(label_value)
            if label != label_value or not 0 <= label < len(LABELS):
                raise StagingError(
                    f"{listing}:{number}: label {label_text} is not one of 0..{len(LABELS) - 1}"
                )
            split_dir = (folder / split).resolve()
            listed = (folder / split / relative).resolve()
            if not listed.is_relative_to(split_dir):
                raise StagingError(f"{listing}:{number}: {relative!r} points outside {folder / split}")
            # the path the listing names; the shared copy lists bare names kept under <class>/
            candidates = (listed, folder / split / LABELS[label] / name)
            source = next((path for path in candidates if path.is_file()), None)
            if source is None:
                raise StagingError(f"{listing}:{number}: image {relative!r} not found under {folder / split}")
            yield StagedImage(split, row, label, name, source.read_bytes())


def write_dataset(images: Iterator[StagedImage], out_dir: Path) -> StagedDataset:
    """Write images and `.lst` files; the hash covers every image's split, label, name and bytes.

    Everything is written to a scratch folder first and moved in at the end, so a staging that
    fails half-way leaves the previous staged data as it was.
    """
    staged = StagedDataset(root=out_dir, counts={split: dict.fromkeys(LABELS, 0) for split in SPLITS})
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".incoming-", dir=out_dir))
    try:
        listings: dict[str, list[str]] = {split: [] for split in SPLITS}
        digest = hashlib.sha256()
        for image in images:
            path = scratch / image.split / image.relative_path
            if path.exists():  # two listed images of one class by one name: one would replace the other
                raise StagingError(f"{image.split}/{image.relative_path} is listed twice (rows differ)")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image.data)
            listings[image.split].append(f"{image.row}\t{image.label}\t{image.relative_path}")
            staged.counts[image.split][LABELS[image.label]] += 1
            image_sha = hashlib.sha256(image.data).hexdigest()
            digest.update(f"{image.split}/{image.relative_path}\t{image.label}\t{image_sha}\n".encode())
        for split, lines in listings.items():
            (scratch / split).mkdir(exist_ok=True)
            (scratch / f"{split}.lst").write_text("\n".join(lines) + "\n")
        staged.sha256 = digest.hexdigest()
        summary = {"counts": staged.counts, "sha256": staged.sha256}
        (scratch / "staged.json").write_text(json.dumps(summary, indent=2))
        for name in (*SPLITS, *(f"{split}.lst" for split in SPLITS), "staged.json"):
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            (scratch / name).replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return staged


def staged_before(out_dir: Path) -> StagedDataset | None:
    """The dataset a completed staging left in `out_dir`, if any (its summary is written last)."""
    summary = out_dir / "staged.json"
    complete = all((out_dir / f"{split}.lst").is_file() and (out_dir / split).is_dir() for split in SPLITS)
    if not summary.is_file() or not complete:
        return None
    recorded = json.loads(summary.read_text())
    return StagedDataset(root=out_dir, counts=recorded["counts"], sha256=recorded["sha256"])


def stage_or_reuse(
    source: str | Path | None, out_dir: Path, *, cache_dir: Path | None = None
) -> StagedDataset:
    """`stage`, except that with no source named (no `source`, no $SCONES_DATASET) the data a complete
    staging left in `out_dir` is used as it is: offline, no download."""
    if source is None and not os.environ.get("SCONES_DATASET"):
        reuse = staged_before(out_dir)
        if reuse is not None:
            return reuse
    return stage(source, out_dir, cache_dir=cache_dir)


def stage(source: str | Path | None, out_dir: Path, *, cache_dir: Path | None = None) -> StagedDataset:
    """Stage from a local folder, a local archive file, or an archive URL (default: the official one).

    `source=None` uses $SCONES_DATASET when set, else downloads the official archive into `cache_dir`.
    """
    if source is None:
        source = os.environ.get(DATASET_ENV) or CIFAR100_URL
    text = str(source)
    if text.startswith(("http://", "https://", "file://")):
        md5 = CIFAR100_MD5 if text == CIFAR100_URL else os.environ.get("SCONES_DATASET_MD5", CIFAR100_MD5)
        archive = download_archive(cache_dir or out_dir / ".cache", url=text, md5=md5)
        return write_dataset(images_from_archive(archive), out_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        return write_dataset(images_from_folder(path), out_dir)
    if path.is_file():
        expected = os.environ.get("SCONES_DATASET_MD5", CIFAR100_MD5)
        if (actual := md5_of(path)) != expected:
            raise StagingError(f"checksum mismatch for {path}: got md5 {actual}, expected {expected}")
        return write_dataset(images_from_archive(path), out_dir)
    raise StagingError(f"dataset source {text!r} is neither a folder, an archive file nor a URL")


def upload_folder(
    s3: Any, bucket: str, prefix: str, folder: Path, include: Callable[[str], bool] = lambda _: True
) -> int:
    """Every file under `folder` whose relative path `include`s to `s3://bucket/<prefix><relative path>`."""
    count = 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and include(relative):
            s3.upload_file(str(path), bucket, f"{prefix}{relative}")
            count += 1
    return count


def upload(staged_root: Path, bucket: str, s3: Any, *, prefix: str = "") -> int:
    """Upload `train/`, `test/` and the `.lst` files to `s3://bucket/<prefix>`; returns the object count."""
    return upload_folder(
        s3,
        bucket,
        prefix,
        staged_root,
        include=lambda relative: relative.endswith(".lst") or relative.split("/", 1)[0] in SPLITS,
    )
