"""Tests of data staging: the CIFAR-100 archive layout, the HTTP download cache, folders, and S3 upload."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import pickle
import shutil
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from scones.labels import LABELS
from tests.conftest import aws_client
from training.staging import (
    SPLITS,
    StagedDataset,
    StagingError,
    download_archive,
    images_from_archive,
    md5_of,
    stage,
    stage_or_reuse,
    staged_before,
    upload,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ARCHIVE_NAME = "cifar-100-python.tar.gz"

# (fine label, file name) per split. Fine labels 8 and 48 are ours; the rest must be skipped. One
# motorcycle is named like a bicycle: the class must come from the label, never from the name.
FAKE_ROWS: dict[str, list[tuple[int, str]]] = {
    "train": [
        (3, "bear_s_000001.png"),
        (8, "bike_s_000010.png"),
        (48, "bike_s_000099.png"),
        (8, "cycle_s_000020.png"),
        (99, "worm_s_000002.png"),
        (48, "motorbike_s_000030.png"),
        (0, "apple_s_000003.png"),
    ],
    "test": [
        (48, "moped_s_000040.png"),
        (58, "pickup_truck_s_000004.png"),
        (8, "bicycle_s_000050.png"),
    ],
}
OURS = {8: 0, 48: 1}  # fine label -> index in LABELS


@dataclass
class FakeArchive:
    path: Path
    md5: str
    data: dict[str, npt.NDArray[np.uint8]]


def build_archive(path: Path, seed: int = 0) -> FakeArchive:
    """A tar.gz in the exact official `cifar-100-python` layout, with random pixels."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, npt.NDArray[np.uint8]] = {}
    with tarfile.open(path, "w:gz") as tar:
        for split, rows in FAKE_ROWS.items():
            data = rng.integers(0, 256, (len(rows), 3072), dtype=np.uint8)
            arrays[split] = data
            batch = {
                b"filenames": [name.encode() for _, name in rows],
                b"batch_label": f"{split} batch".encode(),
                b"fine_labels": [fine for fine, _ in rows],
                b"coarse_labels": [0 for _ in rows],
                b"data": data,
            }
            payload = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{split}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return FakeArchive(path, hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest(), arrays)


def image_of_row(data: npt.NDArray[np.uint8], row: int) -> npt.NDArray[np.uint8]:
    """The HxWx3 image of a CIFAR row (3072 bytes: the R plane, then G, then B)."""
    planes: npt.NDArray[np.uint8] = data[row].reshape(3, 32, 32)
    return planes.transpose(1, 2, 0)


def decode_png(data: bytes) -> npt.NDArray[np.uint8]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        array: npt.NDArray[np.uint8] = np.asarray(image, dtype=np.uint8)
    return array


def read_lst(path: Path) -> list[tuple[int, int, str]]:
    rows = []
    for line in path.read_text().splitlines():
        row, label, relative = line.split("\t")
        rows.append((int(row), int(label), relative))
    return rows


@pytest.fixture
def archive(tmp_path: Path) -> FakeArchive:
    source = tmp_path / "source"
    source.mkdir()
    return build_archive(source / ARCHIVE_NAME)


# images_from_archive -----------------------------------------------------------------------------


def test_archive_yields_exactly_the_bicycle_and_motorcycle_rows(archive: FakeArchive) -> None:
    images = list(images_from_archive(archive.path))
    expected = [
        (split, row, OURS[fine], name)
        for split in SPLITS
        for row, (fine, name) in enumerate(FAKE_ROWS[split])
        if fine in OURS
    ]
    assert [(image.split, image.row, image.label, image.name) for image in images] == expected
    assert len(images) == 6


def test_archive_class_comes_from_the_label_not_the_file_name(archive: FakeArchive) -> None:
    images = {image.name: image for image in images_from_archive(archive.path)}
    misleading = images["bike_s_000099.png"]
    assert misleading.label == LABELS.index("motorcycle")
    assert misleading.relative_path == "motorcycle/bike_s_000099.png"
    assert images["bike_s_000010.png"].relative_path == "bicycle/bike_s_000010.png"


def test_archive_pixels_round_trip_through_png(archive: FakeArchive) -> None:
    images = list(images_from_archive(archive.path))
    assert images
    for image in images:
        decoded = decode_png(image.data)
        assert decoded.shape == (32, 32, 3)
        np.testing.assert_array_equal(decoded, image_of_row(archive.data[image.split], image.row))


def test_archive_channel_order_is_planar_rgb(tmp_path: Path) -> None:
    # A row whose R plane is 255 and G, B planes are 0 must decode as pure red.
    red = np.zeros((1, 3072), dtype=np.uint8)
    red[0, :1024] = 255
    path = tmp_path / ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        for split in SPLITS:
            payload = pickle.dumps({b"data": red, b"fine_labels": [8], b"filenames": [b"red.png"]})
            info = tarfile.TarInfo(f"cifar-100-python/{split}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    for image in images_from_archive(path):
        decoded = decode_png(image.data)
        assert (decoded == np.array([255, 0, 0], dtype=np.uint8)).all()


def test_archive_without_a_split_member_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        payload = pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"fine_labels": [], b"filenames": []})
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(StagingError, match=r"has no cifar-100-python/test"):
        list(images_from_archive(path))


# download_archive over real HTTP -----------------------------------------------------------------


@dataclass
class ArchiveServer:
    """An HTTP server on 127.0.0.1 serving one body at one path, counting the GET requests it answers."""

    body: bytes
    path: str = f"/{ARCHIVE_NAME}"
    requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@pytest.fixture
def archive_server(archive: FakeArchive) -> Iterator[ArchiveServer]:
    state = ArchiveServer(body=archive.path.read_bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path != state.path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_verifies_md5_and_caches(
    archive: FakeArchive, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = download_archive(cache, url=archive_server.url, md5=archive.md5, timeout_s=10)
    assert first == cache / ARCHIVE_NAME
    assert first.read_bytes() == archive.path.read_bytes()
    assert md5_of(first) == archive.md5
    assert archive_server.requests == [f"/{ARCHIVE_NAME}"]
    assert sorted(path.name for path in cache.iterdir()) == [ARCHIVE_NAME]  # no partial left behind

    second = download_archive(cache, url=archive_server.url, md5=archive.md5, timeout_s=10)
    assert second == first
    assert len(archive_server.requests) == 1, "the cached archive was downloaded again"


def test_download_with_wrong_md5_raises_and_leaves_nothing(
    archive: FakeArchive, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    wrong = "0" * 32
    with pytest.raises(StagingError, match="checksum mismatch") as caught:
        download_archive(cache, url=archive_server.url, md5=wrong, timeout_s=10)
    assert archive.md5 in str(caught.value)
    assert wrong in str(caught.value)
    assert list(cache.iterdir()) == []
    assert len(archive_server.requests) == 1


def test_download_replaces_a_corrupt_cached_file(
    archive: FakeArchive, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ARCHIVE_NAME).write_bytes(b"half a download")
    path = download_archive(cache, url=archive_server.url, md5=archive.md5, timeout_s=10)
    assert md5_of(path) == archive.md5
    assert len(archive_server.requests) == 1


def test_download_of_a_missing_url_leaves_nothing(
    archive: FakeArchive, archive_server: ArchiveServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    url = f"http://127.0.0.1:{archive_server.port}/nothing-here.tar.gz"
    with pytest.raises(StagingError, match="404") as caught:
        download_archive(cache, url=url, md5=archive.md5, timeout_s=10)
    assert "give --dataset DIR or set SCONES_DATASET" in str(caught.value), "the way to stage offline"
    assert list(cache.iterdir()) == []


def test_stage_from_url_downloads_once_and_stages(
    archive: FakeArchive, archive_server: ArchiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    cache = tmp_path / "cache"
    first = stage(archive_server.url, tmp_path / "a", cache_dir=cache)
    second = stage(archive_server.url, tmp_path / "b", cache_dir=cache)
    assert len(archive_server.requests) == 1
    assert first.counts == {"train": {"bicycle": 2, "motorcycle": 2}, "test": {"bicycle": 1, "motorcycle": 1}}
    assert first.sha256 == second.sha256


# stage() from a local archive --------------------------------------------------------------------


def test_stage_local_archive_writes_images_and_lst(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    out = tmp_path / "staged"
    staged = stage(archive.path, out)

    assert staged.root == out
    assert staged.counts == {
        "train": {"bicycle": 2, "motorcycle": 2},
        "test": {"bicycle": 1, "motorcycle": 1},
    }
    assert len(staged.sha256) == 64
    assert staged.split_dir("train") == out / "train"

    assert read_lst(out / "train.lst") == [
        (1, 0, "bicycle/bike_s_000010.png"),
        (2, 1, "motorcycle/bike_s_000099.png"),
        (3, 0, "bicycle/cycle_s_000020.png"),
        (5, 1, "motorcycle/motorbike_s_000030.png"),
    ]
    assert read_lst(out / "test.lst") == [
        (0, 1, "motorcycle/moped_s_000040.png"),
        (2, 0, "bicycle/bicycle_s_000050.png"),
    ]
    for split in SPLITS:
        files = sorted(path.relative_to(out / split).as_posix() for path in (out / split).rglob("*.png"))
        assert files == sorted(relative for _, _, relative in read_lst(out / f"{split}.lst"))
        for row, _, relative in read_lst(out / f"{split}.lst"):
            decoded = decode_png((out / split / relative).read_bytes())
            np.testing.assert_array_equal(decoded, image_of_row(archive.data[split], row))

    summary = json.loads((out / "staged.json").read_text())
    assert summary == {"counts": staged.counts, "sha256": staged.sha256}


def test_stage_local_archive_checks_its_md5(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", "f" * 32)
    with pytest.raises(StagingError, match="checksum mismatch") as caught:
        stage(archive.path, tmp_path / "staged")
    assert archive.md5 in str(caught.value)
    assert not (tmp_path / "staged" / "train.lst").exists()


def test_stage_local_archive_without_md5_override_expects_the_official_one(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCONES_DATASET_MD5", raising=False)
    with pytest.raises(StagingError, match="eb9058c3a382ffc7106e4002c42a8d85"):
        stage(archive.path, tmp_path / "staged")


def test_stage_uses_the_dataset_environment_variable(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    monkeypatch.setenv("SCONES_DATASET", str(archive.path))
    staged = stage(None, tmp_path / "staged")
    assert sum(staged.counts["train"].values()) == 4


def test_what_was_staged_before_is_found_whole_or_not_at_all(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`retrain.py` after `make demo`, in a shell without SCONES_DATASET, trains on the staged copy."""
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    assert staged_before(tmp_path / "staged") is None
    first = stage(archive.path, tmp_path / "staged")
    again = staged_before(tmp_path / "staged")
    assert again is not None and (again.counts, again.sha256) == (first.counts, first.sha256)
    shutil.rmtree(tmp_path / "staged" / "test")
    assert staged_before(tmp_path / "staged") is None, "a damaged stage is not taken for one"


def test_with_no_source_named_the_staged_copy_is_used_offline(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`scones demo` or `scones train` in a shell without SCONES_DATASET, after `make demo` staged:
    no download (the official archive is out of reach offline); a source named is staged again."""
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    monkeypatch.delenv("SCONES_DATASET", raising=False)
    first = stage(archive.path, tmp_path / "staged")
    reused = stage_or_reuse(None, tmp_path / "staged", cache_dir=tmp_path / "no-cache")
    assert (reused.counts, reused.sha256) == (first.counts, first.sha256)
    assert not (tmp_path / "no-cache").exists(), "nothing was downloaded"
    (tmp_path / "staged" / "staged.json").unlink()  # an incomplete stage: staged anew from the source
    assert stage_or_reuse(archive.path, tmp_path / "staged").sha256 == first.sha256


def test_stage_of_an_unknown_source_is_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-thing"
    with pytest.raises(StagingError, match="neither a folder, an archive file nor a URL"):
        stage(missing, tmp_path / "staged")


def test_staged_output_is_itself_a_stageable_folder_with_the_same_hash(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    first = stage(archive.path, tmp_path / "first")
    again = stage(tmp_path / "first", tmp_path / "again")
    assert again.counts == first.counts
    assert again.sha256 == first.sha256
    assert read_lst(tmp_path / "again" / "train.lst") == read_lst(tmp_path / "first" / "train.lst")

    # one changed pixel changes the hash
    target = tmp_path / "first" / "test" / "bicycle" / "bicycle_s_000050.png"
    changed = decode_png(target.read_bytes()).copy()
    changed[0, 0] ^= 0xFF
    buffer = io.BytesIO()
    Image.fromarray(changed, mode="RGB").save(buffer, format="PNG")
    target.write_bytes(buffer.getvalue())
    assert stage(tmp_path / "first", tmp_path / "changed").sha256 != first.sha256


def test_restaging_removes_stale_images(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    out = tmp_path / "staged"
    stage(archive.path, out)
    stale = out / "train" / "bicycle" / "stale.png"
    stale.write_bytes(b"left over from an older staging")
    stage(archive.path, out)
    assert not stale.exists()
    assert len(list((out / "train").rglob("*.png"))) == 4


# stage() from the real shared folder -------------------------------------------------------------


def test_stage_real_folder_counts(staged: StagedDataset) -> None:
    assert staged.counts == {
        "train": {"bicycle": 500, "motorcycle": 500},
        "test": {"bicycle": 100, "motorcycle": 100},
    }
    for split, per_class in staged.counts.items():
        for name, count in per_class.items():
            assert len(list((staged.split_dir(split) / name).glob("*.png"))) == count


def test_stage_real_folder_writes_lst_files(staged: StagedDataset) -> None:
    for split in SPLITS:
        lines = (staged.root / f"{split}.lst").read_text().splitlines()
        assert len(lines) == sum(staged.counts[split].values())
        rows = set()
        for line in lines:
            row_text, label_text, relative = line.split("\t")
            label = int(label_text)
            assert row_text == str(int(row_text))
            assert label_text == str(label)
            class_name, file_name = relative.split("/")
            assert class_name == LABELS[label]
            assert file_name.endswith(".png")
            assert (staged.split_dir(split) / relative).is_file()
            rows.add(int(row_text))
        assert len(rows) == len(lines), f"{split}.lst repeats a CIFAR row"


def test_stage_real_folder_copies_bytes_and_labels(staged: StagedDataset, dataset_source: Path) -> None:
    # Every source line maps to the staged file with identical bytes, under its label's class folder.
    for split in SPLITS:
        source_lines = (dataset_source / f"{split}.lst").read_text().splitlines()
        staged_rows = {row: (label, rel) for row, label, rel in read_lst(staged.root / f"{split}.lst")}
        for line in source_lines[:25]:
            row_text, label_text, relative = line.split("\t")
            label, name = int(float(label_text)), Path(relative).name
            assert staged_rows[int(row_text)] == (label, f"{LABELS[label]}/{name}")
            candidates = [dataset_source / split / LABELS[label] / name, dataset_source / split / relative]
            source = next(path for path in candidates if path.is_file())
            assert (staged.split_dir(split) / LABELS[label] / name).read_bytes() == source.read_bytes()


def test_stage_real_folder_hash_is_stable(
    staged: StagedDataset, dataset_source: Path, tmp_path: Path
) -> None:
    again = stage(dataset_source, tmp_path / "again")
    assert again.sha256 == staged.sha256
    assert again.counts == staged.counts
    assert json.loads((tmp_path / "again" / "staged.json").read_text())["sha256"] == staged.sha256


# stage() folder errors ---------------------------------------------------------------------------


def small_folder(root: Path) -> Path:
    """A valid folder in the shared layout: one image per class per split."""
    image = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(image, format="PNG")
    for split in SPLITS:
        lines = []
        for label, name in enumerate(LABELS):
            path = root / split / name / f"{name}_{split}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image.getvalue())
            lines.append(f"{label}\t{label}\t{name}/{path.name}")
        (root / f"{split}.lst").write_text("\n".join(lines) + "\n")
    return root


def test_small_folder_stages(tmp_path: Path) -> None:
    staged = stage(small_folder(tmp_path / "src"), tmp_path / "out")
    assert staged.counts == {
        "train": {"bicycle": 1, "motorcycle": 1},
        "test": {"bicycle": 1, "motorcycle": 1},
    }


def test_folder_without_lst_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    (folder / "train" / "bicycle").mkdir(parents=True)
    with pytest.raises(StagingError, match=r"has no train\.lst"):
        stage(folder, tmp_path / "out")


def test_folder_missing_only_test_lst_is_rejected(tmp_path: Path) -> None:
    folder = small_folder(tmp_path / "src")
    (folder / "test.lst").unlink()
    with pytest.raises(StagingError, match=r"has no test\.lst"):
        stage(folder, tmp_path / "out")


def test_lst_naming_a_missing_file_is_rejected(tmp_path: Path) -> None:
    folder = small_folder(tmp_path / "src")
    with (folder / "train.lst").open("a") as listing:
        listing.write("7\t1\tmotorcycle/ghost.png\n")
    with pytest.raises(StagingError, match=r"train\.lst:3: image 'motorcycle/ghost\.png' not found"):
        stage(folder, tmp_path / "out")


def test_a_failed_restaging_leaves_the_previous_data_intact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = stage(small_folder(tmp_path / "good"), out)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    broken = small_folder(tmp_path / "broken")
    (broken / "test" / "motorcycle" / "motorcycle_test.png").unlink()
    with pytest.raises(StagingError, match="not found"):
        stage(broken, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert stage(out, tmp_path / "again").sha256 == first.sha256


@pytest.mark.parametrize("label", ["2", "-1", "48", "0.5", "1.7"])
def test_lst_with_a_label_out_of_range_is_rejected(tmp_path: Path, label: str) -> None:
    folder = small_folder(tmp_path / "src")
    (folder / "test.lst").write_text(f"0\t{label}\tbicycle/bicycle_test.png\n")
    with pytest.raises(StagingError, match=rf"test\.lst:1: label {label} is not one of 0\.\.1"):
        stage(folder, tmp_path / "out")


@pytest.mark.parametrize(
    "line", ["0\tbicycle\tbicycle/bicycle_train.png", "0\t0", "zero\t0\tbicycle/bicycle_train.png"]
)
def test_malformed_lst_line_is_rejected(tmp_path: Path, line: str) -> None:
    folder = small_folder(tmp_path / "src")
    (folder / "train.lst").write_text(line + "\n")
    with pytest.raises(StagingError, match=r"train\.lst:1: not `row<TAB>label<TAB>path`"):
        stage(folder, tmp_path / "out")


def test_an_im2rec_style_float_label_is_read(tmp_path: Path) -> None:
    """im2rec writes `1.000000`: the same label as `1`."""
    folder = small_folder(tmp_path / "src")
    rows = [line.split("\t") for line in (folder / "test.lst").read_text().splitlines()]
    (folder / "test.lst").write_text(
        "".join(f"{row}\t{float(label):.6f}\t{path}\n" for row, label, path in rows)
    )
    as_floats = stage(folder, tmp_path / "out")
    assert as_floats.counts == stage(small_folder(tmp_path / "ints"), tmp_path / "out-ints").counts


def test_an_lst_path_outside_its_split_folder_is_rejected(tmp_path: Path) -> None:
    folder = small_folder(tmp_path / "src")
    outside = tmp_path / "secret.png"
    outside.write_bytes((folder / "test" / "bicycle" / "bicycle_test.png").read_bytes())
    (folder / "test.lst").write_text("0\t0\t../../secret.png\n")
    with pytest.raises(StagingError, match=r"test\.lst:1: '\.\./\.\./secret\.png' points outside"):
        stage(folder, tmp_path / "out")


def test_the_listed_path_is_staged_and_a_name_listed_twice_in_a_class_is_rejected(tmp_path: Path) -> None:
    """Two listed files of one class with one name would be staged as one image: refused, not merged."""
    folder = small_folder(tmp_path / "src")
    other = folder / "train" / "elsewhere" / "bicycle_train.png"
    other.parent.mkdir()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(buffer, format="PNG")
    other.write_bytes(buffer.getvalue())
    (folder / "train.lst").write_text("0\t0\telsewhere/bicycle_train.png\n")
    (folder / "test.lst").write_text("0\t0\tbicycle/bicycle_test.png\n")
    staged = stage(folder, tmp_path / "out")
    copied = staged.split_dir("train") / "bicycle" / "bicycle_train.png"
    assert copied.read_bytes() == buffer.getvalue(), "the file the listing names, not bicycle/<its name>"
    (folder / "train.lst").write_text("0\t0\tbicycle/bicycle_train.png\n1\t0\telsewhere/bicycle_train.png\n")
    with pytest.raises(StagingError, match=r"train/bicycle/bicycle_train\.png is listed twice"):
        stage(folder, tmp_path / "out2")


def test_blank_lst_lines_are_skipped(tmp_path: Path) -> None:
    folder = small_folder(tmp_path / "src")
    listing = folder / "train.lst"
    listing.write_text("\n" + listing.read_text() + "\n\n")
    staged = stage(folder, tmp_path / "out")
    assert staged.counts["train"] == {"bicycle": 1, "motorcycle": 1}


# upload() to a real moto S3 ----------------------------------------------------------------------


def test_upload_puts_splits_and_lst_files(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint_url: str
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    out = tmp_path / "staged"
    stage(archive.path, out)
    (out / ".cache").mkdir()
    (out / ".cache" / "unrelated.bin").write_bytes(b"not part of the dataset")

    s3 = cast("S3Client", aws_client("s3", moto_endpoint_url))
    s3.create_bucket(Bucket="staging-test")
    count = upload(out, "staging-test", s3, prefix="data/")

    keys = sorted(
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="staging-test")
        for item in page.get("Contents", [])
    )
    assert count == 6 + 2
    assert len(keys) == count
    assert "data/train.lst" in keys
    assert "data/test.lst" in keys
    assert "data/train/motorcycle/bike_s_000099.png" in keys
    assert "data/test/bicycle/bicycle_s_000050.png" in keys
    assert all(
        key.startswith(("data/train/", "data/test/", "data/train.lst", "data/test.lst")) for key in keys
    )
    assert "data/staged.json" not in keys

    body = s3.get_object(Bucket="staging-test", Key="data/train/motorcycle/bike_s_000099.png")["Body"].read()
    assert body == (out / "train" / "motorcycle" / "bike_s_000099.png").read_bytes()
    listing = s3.get_object(Bucket="staging-test", Key="data/train.lst")["Body"].read()
    assert listing == (out / "train.lst").read_bytes()


def test_upload_without_prefix_uses_the_bucket_root(
    archive: FakeArchive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint_url: str
) -> None:
    monkeypatch.setenv("SCONES_DATASET_MD5", archive.md5)
    out = tmp_path / "staged"
    stage(archive.path, out)
    s3 = cast("S3Client", aws_client("s3", moto_endpoint_url))
    s3.create_bucket(Bucket="staging-root")
    assert upload(out, "staging-root", s3) == 8
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="staging-root").get("Contents", [])}
    assert {"train.lst", "test.lst", "test/motorcycle/moped_s_000040.png"} <= keys
    assert len(keys) == 8
