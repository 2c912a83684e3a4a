"""Every kind of upload people send, through the local stack: valid images are classified, the rest
end in `failed/` with a clear reason code, and nothing blocks the uploads after them."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from scones.objects import ObjectRef
from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes


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
    "bomb.png": (png_bomb, "decompression_bomb"),
    "dot.png": (lambda: encode(scene(size=(1, 1)), "PNG"), "too_small"),
}


def run_uploads(stack: LocalStack, uploads: dict[str, bytes]) -> dict[str, dict[str, object]]:
    s3 = stack.client("s3")
    batch = uuid.uuid4().hex[:8]
    keys = {name: f"inbox/bad-input-{batch}/{name}" for name in uploads}
    for name, data in uploads.items():
        s3.put_object(Bucket=stack.resources.bucket, Key=keys[name], Body=data)
    index = wait_for_outcomes(s3, stack.resources.bucket, keys.values(), timeout_s=120, poll_s=0.1)
    assert not index.duplicates
    return {name: index.records[key] for name, key in keys.items() if key in index.records}


def test_every_kind_of_upload_gets_its_one_outcome(stack: LocalStack) -> None:
    uploads = {name: make() for name, make in VALID.items()}
    uploads |= {name: make() for name, (make, _) in INVALID.items()}
    records = run_uploads(stack, uploads)
    assert set(records) == set(uploads), f"missing outcomes: {set(uploads) - set(records)}"
    for name in VALID:
        assert records[name]["outcome"] in ("accepted", "review"), (name, records[name])
    for name, (_, reason) in INVALID.items():
        assert (records[name]["outcome"], records[name]["reason"]) == ("failed", reason), (
            name,
            records[name],
        )
    assert records["exif-rotated.jpg"]["source"] == {
        "format": "JPEG",
        "mode": "RGB",
        "width": 64,
        "height": 48,
    }


def test_an_object_over_the_size_limit_fails_without_being_decoded(stack: LocalStack) -> None:
    lam = stack.client("lambda")
    variables = lam.get_function_configuration(FunctionName="scones-serialize")["Environment"]["Variables"]
    try:
        lam.update_function_configuration(
            FunctionName="scones-serialize",
            Environment={"Variables": variables | {"MAX_IMAGE_BYTES": "1000"}},
        )
        records = run_uploads(stack, {"large.png": encode(scene(size=(200, 200)), "PNG")})
    finally:
        lam.update_function_configuration(
            FunctionName="scones-serialize", Environment={"Variables": variables}
        )
    assert (records["large.png"]["outcome"], records["large.png"]["reason"]) == ("failed", "too_large")


def test_an_object_deleted_before_it_is_read_fails_as_object_missing(stack: LocalStack) -> None:
    obj = ObjectRef(stack.resources.bucket, f"inbox/gone-{uuid.uuid4().hex[:8]}.png", "0123abcd")
    stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.resources.state_machine_arn,
        name=obj.execution_name(),
        input=json.dumps({"object": obj.as_dict(), "received_at": "2026-11-24T00:00:00.000Z"}),
    )
    index = wait_for_outcomes(stack.client("s3"), stack.resources.bucket, [obj.key], timeout_s=60, poll_s=0.1)
    assert (index.records[obj.key]["outcome"], index.records[obj.key]["reason"]) == (
        "failed",
        "object_missing",
    )


@pytest.mark.parametrize("key", ["outside/x.png", "inbox/folder/"])
def test_objects_that_are_not_uploads_get_no_run_and_no_outcome(stack: LocalStack, key: str) -> None:
    import service.moto_adapters as adapters
    from service.outcome_watch import list_record_keys, object_key_of

    s3 = stack.client("s3")
    body = b"" if key.endswith("/") else encode(scene(), "PNG")
    etag = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=body)["ETag"].strip('"')
    installed = adapters.current()
    assert installed is not None and installed.delivery.wait_idle(30)
    executions = stack.client("stepfunctions").list_executions(
        stateMachineArn=stack.resources.state_machine_arn
    )
    started = {execution["name"] for execution in executions["executions"]}
    assert ObjectRef(stack.resources.bucket, key, etag).execution_name() not in started
    assert key not in {object_key_of(record) for record in list_record_keys(s3, stack.resources.bucket)}
