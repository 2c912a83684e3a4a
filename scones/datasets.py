"""Read image folders laid out as `<class>/<image files>`, the layout of staged data and exported labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scones.labels import LABELS

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class LabeledImage:
    relative_path: str  # `<class>/<file>`, stable across machines
    label: int
    data: bytes


def read_labeled_folder(folder: Path, *, limit_per_class: int | None = None) -> list[LabeledImage]:
    """Images under `folder/<class>/` for each known class, sorted by path; other folders are ignored."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of `<class>/<image>` files")
    images: list[LabeledImage] = []
    for label, name in enumerate(LABELS):
        files = sorted(
            path
            for path in (folder / name).glob("*")
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
        for path in files[:limit_per_class]:
            images.append(LabeledImage(f"{name}/{path.name}", label, path.read_bytes()))
    if not images:
        raise FileNotFoundError(f"no images under {folder}/{{{','.join(LABELS)}}}/")
    return images
