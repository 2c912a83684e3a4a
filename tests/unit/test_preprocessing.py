"""Tests of the shared preprocessing path on real images encoded in memory (formats, modes, EXIF, limits)."""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from scones.preprocessing import (
    DEFAULT_CONFIG,
    THUMBNAIL_SIZE,
    ImageRejected,
    PreprocessConfig,
    decode,
    model_input,
    pixel_limit,
    preprocess,
    preview_png,
    thumbnail,
    thumbnail_png,
    to_rgb,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """The bytes of `image` saved in `fmt`, as an upload would carry them."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pixels(image: Image.Image) -> npt.NDArray[np.uint8]:
    return np.asarray(image, dtype=np.uint8)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def halves(width: int, height: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    """An RGB image whose left half is `left` and right half is `right`."""
    image = Image.new("RGB", (width, height), left)
    image.paste(right, (width // 2, 0, width, height))
    return image


def assert_close(actual: npt.ArrayLike, expected: npt.ArrayLike, tolerance: int) -> None:
    difference = np.abs(np.asarray(actual, dtype=np.int64) - np.asarray(expected, dtype=np.int64))
    assert difference.max() <= tolerance, f"{actual!r} is not within {tolerance} of {expected!r}"


def assert_left_right(thumb: Image.Image, left: tuple[int, int, int], right: tuple[int, int, int]) -> None:
    """The thumbnail's left quarter is `left` and its right quarter is `right` (JPEG-lossy tolerance)."""
    array = pixels(thumb).astype(np.int64)
    assert_close(array[:, :8].reshape(-1, 3).mean(axis=0), left, 12)
    assert_close(array[:, -8:].reshape(-1, 3).mean(axis=0), right, 12)


def assert_rejected(data: bytes, reason: str, config: PreprocessConfig = DEFAULT_CONFIG) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        thumbnail(data, config)
    assert caught.value.reason == reason
    assert str(caught.value).startswith(f"{reason}: ")
    assert caught.value.detail
    return caught.value


# Formats -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [
        ("PNG", {}, 0),
        ("JPEG", {"quality": 95}, 12),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 90}, 16),
        ("GIF", {}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
    ],
)
def test_every_allowed_format_becomes_an_rgb_thumbnail(
    fmt: str, options: dict[str, Any], tolerance: int
) -> None:
    source = halves(80, 60, RED, BLUE)
    thumb = thumbnail(encode(source, fmt, **options))
    assert thumb.mode == "RGB"
    assert thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert_left_right(thumb, RED, BLUE)
    if tolerance == 0:
        assert tuple(pixels(thumb)[16, 0]) == RED
        assert tuple(pixels(thumb)[16, 31]) == BLUE


def test_animated_gif_uses_its_first_frame() -> None:
    first = Image.new("RGB", (40, 40), RED)
    second = Image.new("RGB", (40, 40), BLUE)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as opened:
        assert getattr(opened, "n_frames", 1) == 2
    thumb = pixels(thumbnail(data))
    assert (thumb == np.array(RED, dtype=np.uint8)).all()


def test_a_phone_jpeg_with_mpf_data_is_a_jpeg() -> None:
    """Pillow opens a JPEG carrying MPF data (many phone photos) as "MPO": it is decoded the JPEG way
    (reduced-size DCT) and recorded, and saved by retraining, as a JPEG."""
    photo = halves(1200, 800, RED, BLUE)
    data = encode(photo, "MPO", save_all=True, append_images=[photo])
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.format == "MPO"
    image = decode(data)
    assert image.format == "JPEG" and image.size[0] < 1200, "decoded at reduced size"
    _, info = thumbnail_png(data)
    assert (info.format, info.width, info.height, info.animated) == ("JPEG", 1200, 800, False)
    assert_left_right(thumbnail(data), RED, BLUE)


def test_an_animated_gif_is_recorded_as_animated() -> None:
    frames = [Image.new("RGB", (40, 40), color) for color in (RED, BLUE, RED)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert thumbnail_png(data)[1].animated
    assert not thumbnail_png(encode(frames[0], "GIF"))[1].animated


def test_animated_gif_whose_first_frame_differs_in_halves() -> None:
    first = halves(40, 40, BLUE, RED)
    second = halves(40, 40, RED, BLUE)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert_left_right(thumbnail(data), BLUE, RED)


# Modes -------------------------------------------------------------------------------------------


def test_rgba_is_composited_over_white() -> None:
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # left: fully transparent black
    image.paste((0, 0, 255, 255), (20, 0, 40, 40))  # right: opaque blue
    thumb = pixels(thumbnail(encode(image, "PNG")))
    assert tuple(thumb[16, 0]) == WHITE
    assert tuple(thumb[16, 31]) == BLUE


def test_half_transparent_black_becomes_mid_grey() -> None:
    thumb = pixels(thumbnail(encode(Image.new("RGBA", (40, 40), (0, 0, 0, 128)), "PNG")))
    # 255 * (1 - 128/255) = 127
    assert_close(thumb[0, 0], (127, 127, 127), 1)


def test_la_is_composited_over_white() -> None:
    image = Image.new("LA", (40, 40), (0, 0))  # transparent black
    image.paste((0, 255), (20, 0, 40, 40))  # opaque black
    thumb = pixels(thumbnail(encode(image, "PNG")))
    assert tuple(thumb[16, 0]) == WHITE
    assert tuple(thumb[16, 31]) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_over_white(fmt: str) -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, *RED] + [0] * (256 - 2) * 3)
    image.paste(1, (0, 0, 20, 40))  # left half: red; right half: index 0, transparent black
    data = encode(image, fmt, transparency=0)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "P"
        assert "transparency" in opened.info
    thumb = pixels(thumbnail(data))
    assert tuple(thumb[16, 0]) == RED
    assert tuple(thumb[16, 31]) == WHITE


def test_palette_without_transparency_keeps_its_colours() -> None:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([*BLUE, *RED] + [0] * (256 - 2) * 3)
    image.paste(1, (0, 0, 20, 40))
    thumb = pixels(thumbnail(encode(image, "PNG")))
    assert tuple(thumb[16, 0]) == RED
    assert tuple(thumb[16, 31]) == BLUE


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # pure red in CMYK
    image.paste((255, 255, 0, 0), (32, 0, 64, 64))  # pure blue in CMYK
    data = encode(image, "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "CMYK"
    thumb = thumbnail(data)
    assert thumb.mode == "RGB"
    assert_left_right(thumb, RED, BLUE)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_grayscale_becomes_three_equal_channels(fmt: str) -> None:
    gradient = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (64, 1))
    thumb = pixels(thumbnail(encode(Image.fromarray(gradient, mode="L"), fmt)))
    assert thumb.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
    assert (thumb[..., 0] == thumb[..., 1]).all()
    assert (thumb[..., 1] == thumb[..., 2]).all()
    # the gradient survives: dark on the left, bright on the right
    assert thumb[16, 0, 0] < 20
    assert thumb[16, 31, 0] > 235


@pytest.mark.parametrize(
    ("value", "expected"),
    [(65535, 255), (32768, 128), (0, 0), (257 * 100, 100), (255, 1)],
)
def test_sixteen_bit_png_is_scaled_not_clipped(value: int, expected: int) -> None:
    data = encode(Image.fromarray(np.full((40, 40), value, dtype=np.uint16)), "PNG")
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == "I;16"
    thumb = pixels(thumbnail(data))
    assert (thumb == expected).all(), f"{value} -> {thumb[0, 0]!r}, expected {expected}"


def test_sixteen_bit_gradient_keeps_its_ordering() -> None:
    # A clipping conversion would saturate everything above 255 to white.
    ramp = np.tile(np.linspace(0, 65535, 40).round().astype(np.uint16), (40, 1))
    thumb = pixels(thumbnail(encode(Image.fromarray(ramp), "PNG")))[..., 0].astype(np.int64)
    row = thumb[16]
    assert row[0] < 20
    assert row[-1] > 235
    assert 100 < row[16] < 155
    assert (np.diff(row) >= -1).all()


def test_to_rgb_mode_i_with_eight_bit_values_is_not_rescaled() -> None:
    image = Image.fromarray(np.full((10, 10), 200, dtype=np.int32), mode="I")
    assert tuple(pixels(to_rgb(image))[0, 0]) == (200, 200, 200)


def test_to_rgb_keeps_rgb_untouched() -> None:
    image = noise(10, 10)
    assert to_rgb(image) is image


# EXIF orientation --------------------------------------------------------------------------------


def jpeg_with_orientation(stored: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize(
    ("orientation", "to_stored"),
    # Orientation 6: display = stored turned 90° clockwise, so store the upright image turned counter-
    # clockwise (ROTATE_90). Orientation 8 is the mirror case.
    [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)],
)
def test_exif_rotated_jpeg_is_made_upright(orientation: int, to_stored: Image.Transpose) -> None:
    upright = halves(400, 200, RED, BLUE)
    stored = upright.transpose(to_stored)
    assert stored.size == (200, 400)
    data = jpeg_with_orientation(stored, orientation)

    decoded = decode(data)
    assert decoded.size == (400, 200)
    assert_left_right(thumbnail(data), RED, BLUE)

    # Control: the same pixels without the tag are not upright (red on top or at the bottom).
    sideways = pixels(thumbnail(encode(stored, "JPEG", quality=95))).astype(np.int64)
    assert abs(sideways[:, :8, 0].mean() - sideways[:, -8:, 0].mean()) < 40
    assert abs(sideways[:8, :, 0].mean() - sideways[-8:, :, 0].mean()) > 200


def exif_with_a_mistyped_tag() -> bytes:
    """A little-endian EXIF IFD: Orientation 6, and MinSampleValue (a SHORT tag) holding text, which
    Pillow fails to write back when it rotates (seen in the wild from fuzzed camera files)."""
    text = b"Canon" * 8 + b"\0"
    text_offset = 8 + 2 + 2 * 12 + 4  # TIFF header, entry count, two entries, next-IFD offset
    entries = [
        (0x0112, 3, 1, struct.pack("<HH", 6, 0)),
        (0x0108, 2, len(text), struct.pack("<I", text_offset)),
    ]
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + text


def test_corrupt_exif_is_a_clear_rejection() -> None:
    data = encode(Image.new("RGB", (64, 48), RED), "JPEG", exif=exif_with_a_mistyped_tag())
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.getexif()[0x0112] == 6, "the file carries the orientation tag"
    error = assert_rejected(data, "truncated")
    assert "EXIF" in str(error)


# Sizes, pass-through and normalization -----------------------------------------------------------


def test_twelve_megapixel_jpeg_gives_a_thumbnail_and_model_input() -> None:
    photo = halves(4000, 3000, RED, BLUE)
    data = encode(photo, "JPEG", quality=90)
    thumb = thumbnail(data)
    assert thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert thumb.mode == "RGB"
    assert_left_right(thumb, RED, BLUE)

    array = preprocess(data)
    size = DEFAULT_CONFIG.input_size
    assert array.shape == (3, size, size)
    assert array.dtype == np.float32
    assert array.flags["C_CONTIGUOUS"]
    assert float(array.min()) >= -1.0 - 1e-6
    assert float(array.max()) <= 1.0 + 1e-6


def test_custom_input_size_sets_the_model_input_shape() -> None:
    config = PreprocessConfig(input_size=64)
    array = preprocess(encode(noise(100, 70), "PNG"), config)
    assert array.shape == (3, 64, 64)
    assert array.dtype == np.float32


def test_wide_image_is_centre_cropped() -> None:
    # 96x32: three 32x32 squares, red | blue | red; the centre crop is all blue.
    image = Image.new("RGB", (96, 32), RED)
    image.paste(BLUE, (32, 0, 64, 32))
    thumb = pixels(thumbnail(encode(image, "PNG")))
    assert (thumb == np.array(BLUE, dtype=np.uint8)).all()


def test_tall_image_is_centre_cropped() -> None:
    image = Image.new("RGB", (32, 96), RED)
    image.paste(BLUE, (0, 32, 32, 64))
    thumb = pixels(thumbnail(encode(image, "PNG")))
    assert (thumb == np.array(BLUE, dtype=np.uint8)).all()


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_32x32_rgb_passes_through_with_identical_pixels(fmt: str) -> None:
    source = noise(THUMBNAIL_SIZE, THUMBNAIL_SIZE, seed=7)
    thumb = thumbnail(encode(source, fmt))
    np.testing.assert_array_equal(pixels(thumb), pixels(source))


def test_minimum_side_is_accepted() -> None:
    thumb = thumbnail(encode(Image.new("RGB", (DEFAULT_CONFIG.min_side, 50), RED), "PNG"))
    assert thumb.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert (pixels(thumb) == np.array(RED, dtype=np.uint8)).all()


@pytest.mark.parametrize(("value", "expected"), [(0, -1.0), (255, 1.0), (51, -0.6)])
def test_normalization_maps_pixel_values(value: int, expected: float) -> None:
    thumb = np.full((THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3), value, dtype=np.uint8)
    array = model_input(thumb)  # upscaled to 96: a constant image stays constant
    assert array.shape == (3, DEFAULT_CONFIG.input_size, DEFAULT_CONFIG.input_size)
    np.testing.assert_allclose(array, expected, atol=1e-6)


def test_normalization_is_per_pixel_and_channel_planar() -> None:
    rgb = noise(THUMBNAIL_SIZE, THUMBNAIL_SIZE, seed=3)
    config = PreprocessConfig(input_size=THUMBNAIL_SIZE)  # no resize: compare pixel by pixel
    array = model_input(rgb, config)
    expected = (pixels(rgb).astype(np.float64) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(array, expected.transpose(2, 0, 1), atol=1e-6)
    # an array and an image of the same pixels give the same input
    np.testing.assert_array_equal(model_input(pixels(rgb), config), array)


def test_normalization_uses_the_configured_mean_and_std() -> None:
    config = PreprocessConfig(input_size=THUMBNAIL_SIZE, mean=(0.0, 0.5, 1.0), std=(1.0, 0.25, 0.5))
    thumb = np.full((THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3), 255, dtype=np.uint8)
    array = model_input(thumb, config)
    np.testing.assert_allclose(array[:, 0, 0], [1.0, 2.0, 0.0], atol=1e-6)


def test_thumbnail_png_decodes_to_the_thumbnail() -> None:
    data = encode(halves(300, 200, RED, BLUE), "JPEG", quality=95)
    png, info = thumbnail_png(data)
    assert (info.format, info.mode, info.width, info.height) == ("JPEG", "RGB", 300, 200)
    assert not info.animated
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.format == "PNG"
        assert decoded.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        assert decoded.mode == "RGB"
        np.testing.assert_array_equal(pixels(decoded), pixels(thumbnail(data)))
    # and it feeds back through the same path unchanged (the serialize step's output is re-read)
    np.testing.assert_array_equal(pixels(thumbnail(png)), pixels(thumbnail(data)))


def test_preprocess_is_deterministic() -> None:
    data = encode(noise(120, 90, seed=11), "JPEG")
    np.testing.assert_array_equal(preprocess(data), preprocess(data))


# Rejections --------------------------------------------------------------------------------------


def test_empty_bytes_are_rejected() -> None:
    assert_rejected(b"", "empty")


def test_over_max_bytes_is_rejected_before_decoding() -> None:
    data = encode(noise(64, 64), "PNG")
    error = assert_rejected(data, "too_large", PreprocessConfig(max_bytes=len(data) - 1))
    assert str(len(data)) in str(error)
    # exactly at the limit is fine
    assert thumbnail(data, PreprocessConfig(max_bytes=len(data))).size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)


def test_too_large_wins_even_for_garbage() -> None:
    assert_rejected(b"x" * 101, "too_large", PreprocessConfig(max_bytes=100))


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is a plain text file\n" * 4,
        b"<!DOCTYPE html><html><head><title>x</title></head><body>not a photo</body></html>",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        b'{"image": "bicycle.png"}',
        bytes(range(256)) * 4,
    ],
    ids=["text", "html", "pdf", "json", "binary"],
)
def test_non_images_are_rejected(data: bytes) -> None:
    error = assert_rejected(data, "not_an_image")
    assert "PNG" in str(error)


@pytest.mark.parametrize("image_format", ["PPM", "PCX", "ICO"])
def test_a_format_outside_the_allowed_list_is_an_unsupported_format(image_format: str) -> None:
    # A real image in a format Pillow knows but the service does not accept: named, not "no image".
    error = assert_rejected(encode(noise(40, 40), image_format), "unsupported_format")
    assert f"a {image_format} image" in str(error) and "PNG" in str(error)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_truncated_png_is_rejected(fraction: float) -> None:
    data = encode(noise(200, 150), "PNG")
    error = assert_rejected(data[: int(len(data) * fraction)], "truncated")
    assert "incomplete" in str(error)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_truncated_jpeg_is_rejected(fraction: float) -> None:
    data = encode(noise(200, 150), "JPEG", quality=90)
    assert_rejected(data[: int(len(data) * fraction)], "truncated")


def test_jpeg_cut_inside_its_header_is_truncated() -> None:
    # Cut after the SOI marker and part of the headers, before the frame header: fails while opening.
    data = encode(noise(200, 150), "JPEG", quality=90)
    assert data.startswith(b"\xff\xd8")
    assert_rejected(data[:100], "truncated")


def png_declaring(width: int, height: int) -> bytes:
    """A real, tiny PNG whose IHDR is patched to declare `width` x `height` (with a valid CRC)."""
    data = encode(Image.new("RGB", (10, 10), RED), "PNG")
    assert data[12:16] == b"IHDR"
    fields = struct.pack(">II", width, height) + data[24:29]  # keep depth, colour type, etc.
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + fields) & 0xFFFFFFFF)
    return data[:16] + fields + crc + data[33:]


def test_png_declaring_huge_dimensions_is_a_decompression_bomb() -> None:
    data = png_declaring(100_000, 100_000)
    assert len(data) < 200
    with Image.open(io.BytesIO(png_declaring(12, 12))) as control:  # the patching itself is sound
        assert control.size == (12, 12)
    assert_rejected(data, "decompression_bomb")


def test_png_declaring_more_than_max_pixels_is_a_decompression_bomb() -> None:
    # 9000x8000 = 72 MP: above the configured 64 MP limit, below Pillow's own warning (about 89 MP).
    error = assert_rejected(png_declaring(9_000, 8_000), "decompression_bomb")
    assert "9000x8000" in str(error)


def test_16_bit_images_get_a_quarter_of_the_pixel_limit() -> None:
    """16-bit samples take several times the memory per pixel while decoding and converting."""
    wide = Image.fromarray(np.full((100, 100), 40_000, dtype=np.uint16))
    assert wide.mode in ("I;16", "I;16L", "I;16B", "I")
    data = encode(wide, "PNG")
    error = assert_rejected(data, "decompression_bomb", PreprocessConfig(max_pixels=4 * 100 * 100 - 1))
    assert "for I" in str(error)
    assert thumbnail(data, PreprocessConfig(max_pixels=4 * 100 * 100)).size == (
        THUMBNAIL_SIZE,
        THUMBNAIL_SIZE,
    )


def test_each_modes_pixel_limit_is_the_one_the_check_applies() -> None:
    config = PreprocessConfig(max_pixels=40_000)
    assert pixel_limit("RGB", config) == 40_000
    assert pixel_limit("I;16", config) == pixel_limit("F", config) == 10_000
    wide = encode(Image.fromarray(np.full((100, 100), 40_000, dtype=np.uint16)), "PNG")
    assert thumbnail(wide, config).size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)  # exactly at its limit


def test_a_rejection_survives_pickling_with_its_reason() -> None:
    """A process pool sends exceptions back pickled: the reason code must come through."""
    error = assert_rejected(b"not an image at all", "not_an_image")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.reason, copy.detail, str(copy)) == (
        ImageRejected,
        error.reason,
        error.detail,
        str(error),
    )


def test_legit_image_over_a_custom_max_pixels_is_rejected() -> None:
    data = encode(noise(100, 100), "PNG")
    config = PreprocessConfig(max_pixels=100 * 100 - 1)
    error = assert_rejected(data, "decompression_bomb", config)
    assert "100x100" in str(error)
    assert thumbnail(data, PreprocessConfig(max_pixels=100 * 100)).size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)


def test_png_text_chunk_inflating_past_pillows_cap_is_a_decompression_bomb() -> None:
    from PIL.PngImagePlugin import MAX_TEXT_CHUNK, PngInfo

    info = PngInfo()
    info.add_text("comment", "a" * (MAX_TEXT_CHUNK + 1), zip=True)
    data = encode(Image.new("RGB", (16, 16), RED), "PNG", pnginfo=info)
    assert len(data) < MAX_TEXT_CHUNK // 100, "a small file that inflates past the cap"
    assert_rejected(data, "decompression_bomb")


@pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 100), (100, 7)])
def test_tiny_images_are_too_small(width: int, height: int) -> None:
    error = assert_rejected(encode(Image.new("RGB", (width, height), RED), "PNG"), "too_small")
    assert f"{width}x{height}" in str(error)


def test_rejection_is_a_value_error_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"^too_small: 1x1 is under 8 px on a side$"):
        thumbnail(encode(Image.new("RGB", (1, 1)), "PNG"))


def test_a_preview_for_people_is_small_and_as_guarded_as_the_model_input() -> None:
    """The report and the review page show uploads (anyone's bytes) through the same decoder."""
    from service.sample_uploads import png_bomb

    buffer = io.BytesIO()
    Image.new("RGB", (3000, 1500), (200, 30, 30)).save(buffer, format="PNG")
    with Image.open(io.BytesIO(preview_png(buffer.getvalue(), 512))) as preview:
        assert preview.size == (512, 256) and preview.format == "PNG"
    with pytest.raises(ImageRejected) as rejected:
        preview_png(png_bomb(), 512)
    assert rejected.value.reason == "decompression_bomb"
