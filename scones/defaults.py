"""Defaults defined once and cheap to import (no numpy, no Pillow): the threshold, the upload limits,
the endpoint's name and the queues' retention."""

from typing import Final

CONFIDENCE_THRESHOLD: Final = 0.85
MAX_IMAGE_BYTES: Final = 25 * 1024 * 1024
MAX_IMAGE_PIXELS: Final = 64_000_000
MIN_IMAGE_SIDE: Final = 8
DEFAULT_ENDPOINT_NAME: Final = "scones-classifier"  # also the template's EndpointName default (a test checks)
QUEUE_RETENTION_S: Final = 14 * 86400  # SQS's longest: every queue of the stack keeps messages this long
REVIEW_REQUEUE_AFTER_S: Final = 12 * 86400  # an unlabelled review item is queued again (review_requeue.py)
