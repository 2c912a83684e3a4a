"""Uploads of every awkward kind people send, with the outcome each must get: for the load run and tests.

`VALID` images (odd formats and modes) must be classified; each of `INVALID` must end in `failed/`
with its reason code. All are generated here, from seeded pixels: nothing is downloaded or stored.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scene(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def png_bomb() -> bytes:
    """A tiny PNG whose header declares 100000 x 100000 pixels."""
    data = bytearray(encode(scene("L", (8, 8)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def animated_gif() -> bytes:
    frames = [scene("P"), scene("P").rotate(90)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(scene(), "JPEG", exif=exif.tobytes())


def palette_with_transparency() -> bytes:
    image = scene("P")
    image.info["transparency"] = 0
    return encode(image, "PNG", transparency=0)


def sixteen_bit_png() -> bytes:
    return encode(Image.fromarray(np.full((40, 40), 40_000, dtype=np.uint16)), "PNG")


VALID: dict[str, Callable[[], bytes]] = {
    "animated.gif": animated_gif,
    "sixteen-bit.png": sixteen_bit_png,
    "cmyk.jpg": lambda: encode(scene("CMYK"), "JPEG"),
    "palette-transparent.png": palette_with_transparency,
    "exif-rotated.jpg": exif_rotated_jpeg,
    "photo.webp": lambda: encode(scene(), "WEBP"),
    "scan.tiff": lambda: encode(scene(), "TIFF"),
    "grey.png": lambda: encode(scene("L"), "PNG"),
}
INVALID: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.jpg": (lambda: b"", "empty"),
    "truncated.png": (lambda: encode(scene(), "PNG")[:200], "truncated"),
    "truncated.jpg": (lambda: encode(scene(), "JPEG")[:300], "truncated"),
    "notes.jpg": (lambda: b"just some text, not a picture\n" * 10, "not_an_image"),
    "page.jpg": (lambda: b"<!doctype html><html><body>hi</body></html>", "not_an_image"),
    "document.jpg": (lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "not_an_image"),
    "portable.ppm": (lambda: encode(scene(), "PPM"), "unsupported_format"),
    "bomb.png": (png_bomb, "decompression_bomb"),
    "dot.png": (lambda: encode(scene(size=(1, 1)), "PNG"), "too_small"),
}
