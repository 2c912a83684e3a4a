"""The report's per-inference plots number inferences with whole ticks, however few there are."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from monitoring.report import _count_axis


def test_a_few_inferences_get_whole_ticks() -> None:
    figure, axes = plt.subplots()
    axes.scatter([0, 1, 2], [0.9, 0.6, 0.95])
    _count_axis(axes)
    figure.canvas.draw()
    ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
    plt.close(figure)
    assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
