"""Image preprocessing, the one path shared by training, the model server and the serialize Lambda.

Any common upload (PNG, JPEG, WebP, GIF, BMP, TIFF; any mode; EXIF-rotated; any size up to a pixel
limit) becomes a 32x32 RGB thumbnail, the resolution the model learned from (CIFAR-100). The model
input is that thumbnail upscaled with Pillow's 8-bit bicubic resize and normalized. Training feeds
its 32x32 images through the very same `model_input`, so training and serving see identical pixels.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from scones.defaults import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE

THUMBNAIL_SIZE: Final = 32
# the formats accepted, each with the file suffix an image of it is saved under
FORMAT_SUFFIXES: Final = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tiff",
}
ALLOWED_FORMATS: Final = tuple(FORMAT_SUFFIXES)
WIDE_MODES: Final = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
JPEG_FORMATS: Final = ("JPEG", "MPO")  # Pillow opens a JPEG with MPF data (many phone photos) as MPO
BACKGROUND_RGB: Final = (255, 255, 255)

RejectReason = Literal[
    "empty",
    "too_large",
    "not_an_image",
    "unsupported_format",
    "truncated",
    "decompression_bomb",
    "too_small",
]


class ImageRejected(ValueError):
    """An upload that cannot become a model input; `reason` is a stable machine-readable code."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[RejectReason, str]]:
        # pickled with both fields (a process pool sends it back): the default passes only the message
        return type(self), (self.reason, self.detail)


@dataclass(frozen=True)
class PreprocessConfig:
    """How bytes become a model input. The model's metadata carries the values it was trained with."""

    input_size: int = 128  # the recipe's input size; a served model's metadata carries its own
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
    min_side: int = MIN_IMAGE_SIDE


def pixel_limit(mode: str, config: PreprocessConfig) -> int:
    """The most pixels an image of `mode` may have. 16- and 32-bit samples take several times the
    memory per pixel through decoding and conversion (a 64-megapixel 16-bit PNG of 120 KB peaked at
    700 MB): they get a quarter of the pixels."""
    return config.max_pixels // 4 if mode in WIDE_MODES else config.max_pixels


DEFAULT_CONFIG: Final = PreprocessConfig()


# Signatures of image formats the service does not take, to name them in the rejection. Read from the
# first bytes only: no decoder outside ALLOWED_FORMATS ever sees an upload.
_UNSUPPORTED_SIGNATURES: Final = (
    (re.compile(rb"P[1-7]\s"), "PPM"),
    (re.compile(rb"\x0a[\x00-\x05]\x01[\x01\x02\x04\x08]"), "PCX"),
    (re.compile(rb"\x00\x00[\x01\x02]\x00[\x01-\xff]\x00"), "ICO"),
    (re.compile(rb"8BPS"), "PSD"),
    (re.compile(rb"%!PS|\xc5\xd0\xd3\xc6"), "EPS"),
    (re.compile(rb"....ftyp(heic|heix|hevc|mif1|msf1)", re.DOTALL), "HEIF"),
    (re.compile(rb"....ftypavi[fs]", re.DOTALL), "AVIF"),
    (re.compile(rb"\x00\x00\x00\x0cjP  |\xff\x4f\xff\x51"), "JPEG2000"),
    (re.compile(rb"\xff\x0a|\x00\x00\x00\x0cJXL "), "JPEG XL"),
    (re.compile(rb"qoif"), "QOI"),
)


def _format_of(data: bytes) -> str | None:
    """The name of an image format the service does not take, by the upload's first bytes, if any."""
    head = data[:32]
    return next((name for signature, name in _UNSUPPORTED_SIGNATURES if signature.match(head)), None)


def decode(data: bytes, config: PreprocessConfig = DEFAULT_CONFIG) -> Image.Image:
    """Decode the first frame of an upload, upright (EXIF orientation applied), guarded against bombs."""
    if not data:
        raise ImageRejected("empty", "the object has no bytes")
    if len(data) > config.max_bytes:
        raise ImageRejected("too_large", f"{len(data)} bytes is over the limit of {config.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        accepted = ", ".join(ALLOWED_FORMATS)
        known = _format_of(data)
        if known is not None:
            raise ImageRejected("unsupported_format", f"a {known} image; accepted: {accepted}") from None
        raise ImageRejected("not_an_image", f"not a supported image ({accepted})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected("decompression_bomb", str(error)) from None
    except (OSError, SyntaxError, ValueError) as error:
        # A file cut short inside its header (e.g. a JPEG before its SOF marker) fails while opening.
        raise _corrupt("the image header is incomplete or corrupt", error) from None
    width, height = image.size
    limit = pixel_limit(image.mode, config)
    if width * height > limit:
        raise ImageRejected(
            "decompression_bomb",
            f"{width}x{height} is over the limit of {limit} pixels"
            + (f" for {image.mode} images" if limit != config.max_pixels else ""),
        )
    if min(width, height) < config.min_side:
        raise ImageRejected("too_small", f"{width}x{height} is under {config.min_side} px on a side")
    if image.format in JPEG_FORMATS:
        # DCT-domain downscale: a 12 MP photo decodes at 1/8 size, still far above the thumbnail.
        image.draft("RGB", (THUMBNAIL_SIZE * 8, THUMBNAIL_SIZE * 8))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise _corrupt("the image data is incomplete or corrupt", error) from None
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as error:  # Pillow's EXIF parser raises struct.error, TypeError, ... on garbage
        raise ImageRejected("truncated", f"the EXIF metadata is corrupt ({error!r})") from None
    # the copy forgets what it was decoded from; a phone's JPEG with MPF data opens as "MPO"
    upright.format = "JPEG" if image.format in JPEG_FORMATS else image.format
    # whether there is a second frame (counting them all would walk every frame of a GIF)
    # (a JPEG's second frame is MPF's preview or depth map, not animation)
    upright.info["animated"] = image.format not in JPEG_FORMATS and bool(getattr(image, "is_animated", False))
    upright.info["source_size"] = (width, height)  # before the JPEG draft downscale
    return upright


def _corrupt(what: str, error: Exception) -> ImageRejected:
    """Pillow's decoding error as a rejection; a metadata chunk that inflates past Pillow's cap is a bomb."""
    if "Decompressed data too large" in str(error):
        return ImageRejected("decompression_bomb", f"a compressed metadata chunk is too large ({error})")
    return ImageRejected("truncated", f"{what} ({error})")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited over white, 16-bit is scaled, not clipped."""
    # Memory: at the pixel limit every full-size copy is hundreds of MB, so the work is done in place
    # (float32 is exact enough: v * 255/65535 never lies within 1e-3 of a rounding tie).
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.array(image, dtype=np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        np.multiply(values, 255.0 / peak, out=values)
        np.clip(np.rint(values, out=values), 0, 255, out=values)
        return Image.fromarray(values.astype(np.uint8), mode="L").convert("RGB")
    if (image.mode == "P" and "transparency" in image.info) or image.mode in (
        "RGBA",
        "LA",
        "PA",
        "La",
        "RGBa",
    ):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        composited = Image.new("RGB", rgba.size, BACKGROUND_RGB)
        composited.paste(rgba, mask=rgba)  # blends by the alpha band, in place
        return composited
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def square_thumbnail(image: Image.Image) -> Image.Image:
    """Centre square crop, then an antialiased downscale to 32x32: how a photo comes to look like CIFAR."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side)) if width != height else image
    if square.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE):
        return square
    return square.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)


def thumbnail_of(image: Image.Image) -> Image.Image:
    """A decoded upload to the 32x32 RGB thumbnail the model classifies."""
    return square_thumbnail(to_rgb(image))


def preview_png(data: bytes, max_side: int, config: PreprocessConfig = DEFAULT_CONFIG) -> bytes:
    """A PNG of the upload for people (report, review page), at most `max_side` px on a side, decoded
    under the same guards as the model's input; raises ImageRejected."""
    image = to_rgb(decode(data, config))
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail(data: bytes, config: PreprocessConfig = DEFAULT_CONFIG) -> Image.Image:
    """Bytes of any supported upload to the 32x32 RGB thumbnail the model classifies."""
    return thumbnail_of(decode(data, config))


@dataclass(frozen=True)
class SourceInfo:
    """What the upload was, for the outcome record (never the pixels)."""

    format: str
    mode: str
    width: int
    height: int
    animated: bool


def thumbnail_png(data: bytes, config: PreprocessConfig = DEFAULT_CONFIG) -> tuple[bytes, SourceInfo]:
    """The thumbnail as PNG (a few KB: small enough to pass between workflow steps) and the source's facts."""
    image = decode(data, config)
    info = SourceInfo(
        format=str(image.format or "unknown"),
        mode=image.mode,
        width=int(image.info.get("source_size", image.size)[0]),
        height=int(image.info.get("source_size", image.size)[1]),
        animated=bool(image.info.get("animated", False)),
    )
    buffer = io.BytesIO()
    thumbnail_of(image).save(buffer, format="PNG")
    return buffer.getvalue(), info


def model_input(
    thumb: Image.Image | npt.NDArray[np.uint8], config: PreprocessConfig = DEFAULT_CONFIG
) -> npt.NDArray[np.float32]:
    """A 32x32 RGB thumbnail (image or HxWx3 uint8 array) to the normalized CHW float32 model input."""
    image = thumb if isinstance(thumb, Image.Image) else Image.fromarray(thumb, mode="RGB")
    if image.size != (config.input_size, config.input_size):
        image = image.resize((config.input_size, config.input_size), Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(config.mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(config.std, dtype=np.float32)
    normalized: npt.NDArray[np.float32] = ((pixels - mean) * inv_std).transpose(2, 0, 1)
    return np.ascontiguousarray(normalized)


def preprocess(data: bytes, config: PreprocessConfig = DEFAULT_CONFIG) -> npt.NDArray[np.float32]:
    """Bytes of an upload to the model input: decode, upright, RGB, thumbnail, upscale, normalize."""
    return model_input(thumbnail(data, config), config)
