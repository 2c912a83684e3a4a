"""CloudWatch GetMetricData answers percentiles (`p50`, `p99.9`, ...), which moto 5.2.5 leaves empty.

moto's `Statistics.get_statistics_for_type` knows Sum, Average, Minimum, Maximum and SampleCount and
returns None for anything else, so a `p90` query comes back without values. `install()` adds the
percentiles, computed like CloudWatch's nearest-rank percentile over the single values of the period.
A period holding only statistic sets has no distribution (real CloudWatch answers no percentile):
its mean stands in, where moto would otherwise fail the whole request on the missing value.
(`service.persistence` restores the percentile metrics as single values, so this is rare.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("metric_percentiles")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")


def nearest_rank(values: Sequence[float], percent: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def install() -> None:
    from moto.cloudwatch.models import Statistics

    uninstall()
    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        match = _PERCENTILE.match(stat)
        if match is None:
            return original(self, stat)
        singles = self.metric_single_values_list
        if singles:
            return nearest_rank(singles, float(match.group(1)))
        count = sum(float(datum.sample_count) for datum in self.metric_aggregated_list)
        return sum(float(datum.sum) for datum in self.metric_aggregated_list) / count if count else 0.0

    _patches.replace(Statistics, "get_statistics_for_type", get_statistics_for_type)


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
