"""The label order of the classifier, defined once: index i of every probability vector is LABELS[i]."""

from typing import Final

LABELS: Final[tuple[str, ...]] = ("bicycle", "motorcycle")

# CIFAR-100 fine-label ids of our classes, in LABELS order.
CIFAR100_FINE_LABELS: Final[dict[str, int]] = {"bicycle": 8, "motorcycle": 48}


def label_index(name: str) -> int:
    """Index of a class name in LABELS; ValueError names the known classes."""
    try:
        return LABELS.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; known classes: {', '.join(LABELS)}") from None
