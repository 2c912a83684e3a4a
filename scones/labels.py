"""The label order of the classifier, defined once: index i of every probability vector is LABELS[i]."""

from typing import Final

LABELS: Final[tuple[str, ...]] = ("bicycle", "motorcycle")

# CIFAR-100 fine-label ids of our classes, in LABELS order.
CIFAR100_FINE_LABELS: Final[dict[str, int]] = {"bicycle": 8, "motorcycle": 48}
