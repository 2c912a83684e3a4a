"""Defaults defined once and cheap to import (no numpy, no Pillow): the threshold, the upload limits and
the endpoint's name."""

from typing import Final

CONFIDENCE_THRESHOLD: Final = 0.85
MAX_IMAGE_BYTES: Final = 25 * 1024 * 1024
MAX_IMAGE_PIXELS: Final = 64_000_000
MIN_IMAGE_SIDE: Final = 8
DEFAULT_ENDPOINT_NAME: Final = "scones-classifier"  # also the template's EndpointName default (a test checks)
