"""What `scones.preprocessing.preprocess` costs for a phone photo and for a CIFAR-sized PNG.

Generates a photo-like 12-megapixel (4000x3000) JPEG (smooth colour gradients, soft blobs and
sensor-like noise, saved at quality 90; a few MB like a real phone photo) and a 32x32 PNG, and
measures for each, from the encoded bytes to the normalized model input:

- the median wall-clock time of `preprocess` over `--runs` runs (>= 20);
- peak memory of one call: the Python/numpy heap peak (tracemalloc) and, on Linux, the growth of
  the process's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs), which
  also counts Pillow's decode buffers that tracemalloc does not see; and the RSS growth for the
  worst uploads, flat PNGs at the pixel limit in the modes that need converting (RGBA, LA, P with
  transparency, 16-bit), against the serialize Lambda's 1024 MB.

It then compares two resize paths for the photo, each timed as a median of `--runs` runs:

- ours: decode (JPEG draft mode), centre square crop, Lanczos to the 32x32 thumbnail, bicubic
  upscale to the model's input size, normalize (i.e. `preprocess`);
- direct: decode at full resolution, centre square crop, Lanczos straight to the input size,
  normalize: what a server that skipped the CIFAR-style thumbnail would do;

and, on an already-decoded 4000x3000 RGB image, the resize steps alone (thumbnail + upscale vs one
direct resize), so the decode cost does not hide the difference.

    .venv/bin/python bench/preprocessing_cost.py [--model DIR | --input-size N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import multiprocessing
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from scones.model_metadata import ModelMetadata
from scones.preprocessing import (
    DEFAULT_CONFIG,
    PreprocessConfig,
    model_input,
    pixel_limit,
    preprocess,
    square_thumbnail,
    to_rgb,
)

PHOTO_SIZE = (4000, 3000)


def photo_like_jpeg(seed: int = 0, quality: int = 90) -> bytes:
    """A 4000x3000 RGB JPEG with smooth gradients, a few soft blobs and per-pixel noise."""
    width, height = PHOTO_SIZE
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    channels = []
    for channel in range(3):
        base = 60 + 120 * (0.6 * x + 0.4 * y) + 25 * np.sin(2 * np.pi * (1.5 + channel) * x + channel)
        for _ in range(6):
            cx, cy, radius, gain = (
                rng.uniform(0, 1),
                rng.uniform(0, 1),
                rng.uniform(0.05, 0.3),
                rng.uniform(-60, 60),
            )
            base = base + gain * np.exp(-((x - cx) ** 2 + ((y - cy) * 0.75) ** 2) / (2 * radius**2))
        channels.append(base)
    pixels = np.stack(channels, axis=-1)
    pixels += rng.normal(0.0, 6.0, size=pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def small_png(photo: bytes) -> bytes:
    """A 32x32 PNG, the size of the CIFAR-100 images the model was trained on."""
    with Image.open(io.BytesIO(photo)) as image:
        small = image.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()


def solid_png(side: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (120, 60, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def median_seconds(function: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _vm_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_in_child(path: str, data: bytes, config: PreprocessConfig) -> dict[str, float | None]:
    """Runs in a fresh interpreter: one call, its tracemalloc peak and its VmHWM growth, in MiB."""
    function = preprocess if path == "ours" else direct_from_bytes
    function(solid_png(), config)  # first-call imports and lazy set-up are not the image's cost
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _vm_kib("VmRSS")
    except OSError:
        before = None
    tracemalloc.start()
    try:
        function(data, config)
        _, heap_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    after = _vm_kib("VmHWM")
    growth = max(0, after - before) / 1024 if before is not None and after is not None else None
    return {"tracemalloc_peak_mib": heap_peak / 2**20, "rss_peak_growth_mib": growth}


def peak_memory(path: str, data: bytes, config: PreprocessConfig) -> dict[str, float | None]:
    """Peak memory of one call, measured in a freshly spawned process so earlier calls do not mask it."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, float | None] = pool.apply(_peak_in_child, (path, data, config))
        return result


def at_the_pixel_limit(mode: str, config: PreprocessConfig) -> bytes:
    """A flat square PNG of `mode` as large as its pixel limit allows: tiny to upload, the most
    memory a decode can take (the serialize Lambda has 1024 MB)."""
    side = int(pixel_limit(mode, config) ** 0.5)
    options: dict[str, Any] = {}
    if mode == "I;16":
        image = Image.fromarray(np.full((side, side), 30000, dtype=np.uint16))
    elif mode == "P":
        image, options = Image.new("P", (side, side), 0), {"transparency": 0}
    else:
        image = Image.new(mode, (side, side))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


PIXEL_LIMIT_MODES = ("RGB", "RGBA", "LA", "P", "I;16")


def direct_from_image(image: Image.Image, config: PreprocessConfig) -> npt.NDArray[np.float32]:
    """Centre square crop, then one Lanczos resize straight to the input size, normalized."""
    rgb = to_rgb(image)
    width, height = rgb.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    resized = square.resize(
        (config.input_size, config.input_size), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    return model_input(resized, config)


def direct_from_bytes(data: bytes, config: PreprocessConfig) -> npt.NDArray[np.float32]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # full resolution: no draft mode
        return direct_from_image(image, config)


def ours_from_image(image: Image.Image, config: PreprocessConfig) -> npt.NDArray[np.float32]:
    return model_input(square_thumbnail(to_rgb(image)), config)


def measure(config: PreprocessConfig, runs: int, seed: int) -> dict[str, Any]:
    photo = photo_like_jpeg(seed)
    png = small_png(photo)
    with Image.open(io.BytesIO(photo)) as image:
        decoded = image.convert("RGB")

    def milliseconds(function: Callable[[], object]) -> float:
        return median_seconds(function, runs) * 1000

    result: dict[str, Any] = {"input_size": config.input_size, "runs": runs, "preprocess": {}}
    for name, data in {"photo_jpeg_4000x3000": photo, "png_32x32": png}.items():

        def call(data: bytes = data) -> object:
            return preprocess(data, config)

        result["preprocess"][name] = {
            "bytes": len(data),
            "median_ms": milliseconds(call),
            **peak_memory("ours", data, config),
        }
    result["pixel_limit_peak_rss_mib"] = {
        mode: peak_memory("ours", at_the_pixel_limit(mode, config), config)["rss_peak_growth_mib"]
        for mode in PIXEL_LIMIT_MODES
    }
    result["resize_paths_from_jpeg_bytes"] = {
        "ours_ms": milliseconds(lambda: preprocess(photo, config)),
        "direct_ms": milliseconds(lambda: direct_from_bytes(photo, config)),
        "direct_peak": peak_memory("direct", photo, config),
    }
    result["resize_paths_from_decoded_rgb"] = {
        "ours_ms": milliseconds(lambda: ours_from_image(decoded, config)),
        "direct_ms": milliseconds(lambda: direct_from_image(decoded, config)),
    }
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"model input {result['input_size']} px; medians of {result['runs']} runs")
    print(f"\n{'preprocess(bytes)':<24} {'bytes':>10} {'median ms':>10} {'heap MiB':>9} {'RSS MiB':>8}")
    for name, row in result["preprocess"].items():
        rss = row["rss_peak_growth_mib"]
        rss_text = f"{rss:8.1f}" if rss is not None else f"{'n/a':>8}"
        print(
            f"{name:<24} {row['bytes']:>10} {row['median_ms']:>10.2f} "
            f"{row['tracemalloc_peak_mib']:>9.1f} {rss_text}"
        )
    print("\none square PNG at its mode's pixel limit -> model input: peak RSS growth")
    for mode, growth in result["pixel_limit_peak_rss_mib"].items():
        side = int(pixel_limit(mode, DEFAULT_CONFIG) ** 0.5)
        size = f"{side}x{side}"
        print(f"  {mode:<6} {size:>11} {f'{growth:.0f} MiB' if growth is not None else 'n/a':>10}")
    from_bytes = result["resize_paths_from_jpeg_bytes"]
    peak = from_bytes["direct_peak"]
    rss = f"{peak['rss_peak_growth_mib']:.1f}" if peak["rss_peak_growth_mib"] is not None else "n/a"
    decoded = result["resize_paths_from_decoded_rgb"]
    rows = [
        ("12 MP JPEG bytes -> model input", None),
        ("  ours   (draft decode, 32x32 thumbnail, upscale)", from_bytes["ours_ms"]),
        ("  direct (full decode, one resize to input size)", from_bytes["direct_ms"]),
        (f"         direct peak: heap {peak['tracemalloc_peak_mib']:.1f} MiB, RSS +{rss} MiB", None),
        ("decoded 4000x3000 RGB -> model input (resize steps only)", None),
        ("  ours   (crop, Lanczos to 32x32, bicubic up)", decoded["ours_ms"]),
        ("  direct (crop, Lanczos to input size)", decoded["direct_ms"]),
    ]
    for label, value in rows:
        if value is None:
            print(("\n" if not label.startswith(" ") else "") + label)
        else:
            print(f"{label:<52} {value:9.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, help="take the input size from this model's metadata")
    parser.add_argument(
        "--input-size", type=int, help=f"model input size (default {DEFAULT_CONFIG.input_size})"
    )
    parser.add_argument("--runs", type=int, default=20, help="timed runs per measurement (>= 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated photo")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.runs < 20:
        sys.exit("--runs must be at least 20")
    config = DEFAULT_CONFIG
    if args.model is not None:
        config = ModelMetadata.read(args.model).preprocess_config()
    if args.input_size is not None:
        config = PreprocessConfig(input_size=args.input_size, mean=config.mean, std=config.std)
    result = measure(config, args.runs, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
