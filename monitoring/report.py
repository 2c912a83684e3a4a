"""`scones report`: plots and one self-contained HTML page of recent inferences, from the running service.

Built from the outcome records (each has the probabilities, the confidence, the threshold and the
outcome) and the review labels (the true class where a person gave one). Works against AWS or the
local stack (plain boto3). Writes:

- `recent_inference_confidence.png`: each recent inference's confidence against the threshold line
  (the seed project's plot of the same name);
- `inference_result.png`: each inference's probability of bicycle, coloured by outcome, marked by
  the true class where known (the seed's `inference_result.png`);
- `outcomes_over_time.png`: accepted / review / failed per time bucket;
- `index.html`: all three plus a table of the last N inferences with thumbnails, images inlined.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from monitoring.review import stored_labels
from scones.defaults import CONFIDENCE_THRESHOLD
from scones.objects import OUTCOME_PREFIXES
from scones.outcomes import OutcomeRecord
from scones.steps import parse_iso

LISTING_MARGIN: Final = 50
OUTCOME_COLORS: Final = {"accepted": "#2a9d8f", "review": "#e9c46a", "failed": "#e76f51"}
TRUTH_MARKERS: Final = {"bicycle": "o", "motorcycle": "s", "neither": "x", None: "."}


@dataclass(frozen=True)
class Inference:
    record: OutcomeRecord
    truth: str | None
    recorded_at: datetime


def _timestamp(text: str | None) -> datetime:
    return parse_iso(text or "1970-01-01T00:00:00Z")


def recent_inferences(s3: Any, bucket: str, last: int) -> list[Inference]:
    """The last `last` outcome records (by write time), oldest first, with review labels joined in."""
    listed = []
    paginator = s3.get_paginator("list_objects_v2")
    for kind in OUTCOME_PREFIXES:
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{kind}/"):
            listed += page.get("Contents", [])
    listed.sort(key=lambda item: item["LastModified"])
    labels = {(label["key"], label["etag"]): label["label"] for label in stored_labels(s3, bucket)}
    inferences = []
    # S3 lists LastModified to the second: read a margin more, then order by the records' own times
    for item in listed[-(last + LISTING_MARGIN) :]:
        record = OutcomeRecord.model_validate_json(
            s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        )
        truth = labels.get((record.key, record.etag))
        inferences.append(Inference(record, truth, _timestamp(record.recorded_at)))
    inferences.sort(key=lambda inference: inference.recorded_at)
    return inferences[-last:]


def _count_axis(axes: Any) -> None:
    """Inference numbers on the x axis: whole ticks only (a handful of points got 0.25, 0.5, ...)."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_confidence(inferences: list[Inference]) -> bytes:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4))
    threshold = next(
        (i.record.threshold for i in inferences if i.record.threshold is not None), CONFIDENCE_THRESHOLD
    )
    for outcome, color in OUTCOME_COLORS.items():
        points = [
            (n, i.record.confidence)
            for n, i in enumerate(inferences)
            if i.record.outcome == outcome and i.record.confidence is not None
        ]
        if points:
            axes.scatter(
                [p[0] for p in points],
                [p[1] for p in points],
                s=14,
                color=color,
                label=f"{outcome} ({len(points)})",
            )
    axes.axhline(threshold, color="#264653", linestyle="--", linewidth=1.2, label=f"threshold {threshold}")
    axes.set(
        title="Confidence of recent inferences",
        xlabel="inference (oldest → newest)",
        ylabel="confidence",
        ylim=(0.45, 1.02),
    )
    _count_axis(axes)
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(alpha=0.3)
    png = _figure_png(figure)
    plt.close(figure)
    return png


def plot_bicycle_probability(inferences: list[Inference]) -> bytes:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4))
    for outcome, color in OUTCOME_COLORS.items():
        for truth, marker in TRUTH_MARKERS.items():
            points = [
                (n, i.record.probabilities["bicycle"])
                for n, i in enumerate(inferences)
                if i.record.outcome == outcome and i.truth == truth and i.record.probabilities
            ]
            if points:
                label = f"{outcome}, true {truth}" if truth else f"{outcome}, unlabeled"
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                axes.scatter(xs, ys, s=22 if truth else 12, color=color, marker=marker, label=label)
    axes.axhline(0.5, color="#888888", linewidth=0.8)
    axes.set(
        title="Probability of bicycle per inference",
        xlabel="inference (oldest → newest)",
        ylabel="p(bicycle)",
        ylim=(-0.02, 1.02),
    )
    _count_axis(axes)
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    axes.grid(alpha=0.3)
    png = _figure_png(figure)
    plt.close(figure)
    return png


def plot_outcomes_over_time(inferences: list[Inference], buckets: int = 20) -> bytes:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 3.5))
    if inferences:
        start = inferences[0].recorded_at.timestamp()
        span = inferences[-1].recorded_at.timestamp() - start
        width = max(span / buckets, 1.0)
        used = min(buckets, int(span / width) + 1)
        counts: dict[str, Counter[int]] = {outcome: Counter() for outcome in OUTCOME_COLORS}
        for inference in inferences:
            counts[inference.record.outcome][
                min(int((inference.recorded_at.timestamp() - start) / width), used - 1)
            ] += 1
        bottom = [0] * used
        for outcome, color in OUTCOME_COLORS.items():
            heights = [counts[outcome][n] for n in range(used)]
            axes.bar(range(used), heights, bottom=bottom, color=color, label=outcome)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ticks = list(range(0, used, max(1, used // 6)))
        axes.set_xticks(
            ticks, [datetime.fromtimestamp(start + n * width, UTC).strftime("%H:%M:%S") for n in ticks]
        )
        axes.tick_params(axis="x", labelrotation=30)
        axes.set_xlabel(f"bucket start, UTC ({width:.0f} s buckets, {inferences[0].recorded_at:%Y-%m-%d})")
    axes.set(title="Outcomes over time", ylabel="uploads")
    axes.legend(fontsize=8)
    png = _figure_png(figure)
    plt.close(figure)
    return png


def _thumbnail_uri(s3: Any, record: OutcomeRecord) -> str:
    """The recorded version's 64 px preview; "" for anything that cannot be shown (gone, too large,
    not an image, a decompression bomb: uploads are anyone's bytes)."""
    from handlers.aws import S3ObjectStore
    from scones.preprocessing import DEFAULT_CONFIG, ImageRejected, preview_png
    from scones.steps import ObjectMissing, TransientError

    try:  # the recorded version, left unread over the size limit
        _, data = S3ObjectStore(s3).read(
            record.bucket,
            record.key,
            DEFAULT_CONFIG.max_bytes,
            etag=record.etag,
            version_id=record.version_id,
        )
        if data is None:
            return ""
        png = preview_png(data, 64)
    except (ImageRejected, OSError, ObjectMissing, TransientError, s3.exceptions.ClientError):
        return ""
    return _png_uri(png)


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _row(inference: Inference, thumbnail_uri: str) -> str:
    record = inference.record
    image = f'<img src="{thumbnail_uri}" alt="thumbnail">' if thumbnail_uri else ""
    cells = [
        image,
        html.escape(record.key),
        record.outcome,
        html.escape(record.label or record.reason or ""),
        _number(record.confidence),
        _number((record.probabilities or {}).get("bicycle")),
        html.escape(inference.truth or ""),
        html.escape(record.model_version or ""),
        html.escape(record.recorded_at or ""),
    ]
    tds = [
        f'<td class="{record.outcome}">{cell}</td>' if n == 2 else f"<td>{cell}</td>"
        for n, cell in enumerate(cells)
    ]
    return "<tr>" + "".join(tds) + "</tr>"


def write_report(
    s3: Any, bucket: str, out: Path, *, last: int = 200, thumbnails: bool = True
) -> dict[str, Any]:
    """Write the plots and `index.html` to `out`; a summary of what it shows."""
    inferences = recent_inferences(s3, bucket, last)  # first: a stack that cannot be read leaves no folder
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "recent_inference_confidence.png": plot_confidence(inferences),
        "inference_result.png": plot_bicycle_probability(inferences),
        "outcomes_over_time.png": plot_outcomes_over_time(inferences),
    }
    for name, png in plots.items():
        (out / name).write_bytes(png)
    counts = Counter(i.record.outcome for i in inferences)
    rows = []
    for inference in reversed(inferences):
        record = inference.record
        uri = _thumbnail_uri(s3, record) if thumbnails else ""
        rows.append(_row(inference, uri))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scones Unlimited: recent outcomes</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; }}
td.accepted {{ color: #2a9d8f; }} td.review {{ color: #b08900; }} td.failed {{ color: #e76f51; }}
img {{ image-rendering: pixelated; }}
</style></head><body>
<h1>Recent outcomes</h1>
<p>{len(inferences)} most recent outcomes in <code>s3://{html.escape(bucket)}</code>:
{counts["accepted"]} accepted, {counts["review"]} sent to review, {counts["failed"]} failed;
{sum(i.truth is not None for i in inferences)} with a reviewer's label.</p>
{"".join(f'<p><img src="{_png_uri(png)}" alt="{name}"></p>' for name, png in plots.items())}
<h2>Last {len(inferences)} outcomes</h2>
<table><thead><tr><th></th><th>object</th><th>outcome</th><th>label / reason</th><th>confidence</th>
<th>p(bicycle)</th><th>true class</th><th>model</th><th>recorded</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>
"""
    (out / "index.html").write_text(page)
    return {"inferences": len(inferences), "outcomes": dict(counts), "files": [*plots, "index.html"]}
