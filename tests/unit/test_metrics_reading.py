"""Durations for `--since`, and the nearest-rank percentile the local CloudWatch computes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitoring.metrics import parse_duration
from service.moto_adapters.metric_percentiles import nearest_rank


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "h", "1w", "-1h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert nearest_rank(values, 50) == 50.0
    assert nearest_rank(values, 99) == 99.0
    assert nearest_rank(values, 100) == 100.0
    assert nearest_rank(values, 0.5) == 1.0
    assert nearest_rank([], 50) is None


def test_the_period_is_in_the_unit_cloudwatch_requires_for_how_old_the_window_is() -> None:
    """Within 15 days any multiple of 60 s; up to 63 days of 300 s; beyond, of 3600 s (else no data)."""
    from datetime import UTC, datetime, timedelta

    from monitoring.metrics import _period

    now = datetime(2026, 11, 24, tzinfo=UTC)
    for days, unit in ((1, 60), (20, 300), (90, 3600)):
        window = timedelta(days=days, seconds=120).total_seconds()
        period = _period(window, now - timedelta(days=days, seconds=120), now)
        assert period % unit == 0 and period >= window, (days, period)
