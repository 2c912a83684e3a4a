"""(speed) moto's response serializer reads ISO 8601 timestamp strings without dateutil.

moto's `TimestampSerializer` (5.2.5) passes every timestamp it writes through botocore's
`parse_to_aware_datetime`, which hands strings to `dateutil.parser.parse`: about a tenth of a
millisecond each, so half the server's time for a ListObjectsV2 of 500 keys (S3 keeps LastModified
as an ISO string). `install()` gives the serializer a version that reads `YYYY-MM-DDTHH:MM:SS...`
strings with `datetime.fromisoformat` (then in UTC, as botocore returns them) and leaves
every other value (datetimes, epoch numbers, date-only strings) to botocore's function.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("response_timestamps")


def fast_aware_datetime(original: Callable[[Any], datetime]) -> Callable[[Any], datetime]:
    def parse_to_aware_datetime(value: Any) -> datetime:
        if isinstance(value, str) and "T" in value:  # a date and a time: never botocore's epoch case
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return original(value)
            # as botocore: in UTC, and a time without an offset is taken as UTC
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return original(value)

    return parse_to_aware_datetime


def install() -> None:
    from moto.core import serialize

    uninstall()
    original = getattr(serialize, "parse_to_aware_datetime")  # noqa: B009 - not re-exported
    _patches.replace(serialize, "parse_to_aware_datetime", fast_aware_datetime(original))


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
