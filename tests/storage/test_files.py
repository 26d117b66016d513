"""Images and masks kept as content-addressed files."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt_desktop.storage import FileStore, NotFoundError, StorageError


def write_png(path: Path, rgb: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def test_identical_images_are_stored_once(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    rgb = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    a = write_png(tmp_path / "a.PNG", rgb)
    b = tmp_path / "copy" / "b.png"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())

    rel_a, sha_a = store.store_image(a)
    rel_b, sha_b = store.store_image(b)
    assert (rel_a, sha_a) == (rel_b, sha_b)
    assert rel_a == f"images/{sha_a[:2]}/{sha_a}.png"
    assert store.path(rel_a).read_bytes() == a.read_bytes()  # the original bytes, untouched
    assert len([p for p in (tmp_path / "store").rglob("*") if p.is_file()]) == 1

    other, sha_other = store.store_image(write_png(tmp_path / "c.png", 255 - rgb))
    assert other != rel_a and sha_other != sha_a


def test_camera_frame_is_stored_as_png_with_its_colours(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    frame = np.zeros((20, 30, 3), np.uint8)
    frame[..., 0] = 200  # red in RGB
    rel, sha = store.store_image(frame)
    assert rel.endswith(".png") and store.store_image(frame.copy()) == (rel, sha)
    np.testing.assert_array_equal(store.read_image(rel), frame)
    with pytest.raises(ValueError, match="camera frame"):
        store.store_image(np.zeros((4, 4, 2), np.uint8))


def test_mask_round_trips_within_one_level(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    amap = np.random.default_rng(1).random((48, 64)).astype(np.float32)
    amap[0, 0], amap[0, 1] = -0.5, 1.5  # out of range is clipped
    rel = store.store_mask(amap)
    assert rel.startswith("masks/") and rel.endswith(".png")
    back = store.read_mask(rel)
    assert back.dtype == np.float32 and back.shape == amap.shape
    assert np.abs(back - np.clip(amap, 0, 1)).max() <= 1 / 255 + 1e-6
    assert store.store_mask(amap) == rel  # named by content
    with pytest.raises(ValueError, match="anomaly map"):
        store.store_mask(np.zeros((2, 2, 2)))


def test_paths_stay_inside_the_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    assert store.path("images/ab/x.png") == tmp_path / "store" / "images" / "ab" / "x.png"
    for bad in ("../secret.txt", "/etc/passwd", "images/../../x"):
        with pytest.raises(ValueError):
            store.path(bad)
    with pytest.raises(NotFoundError, match="missing"):
        store.read_mask("masks/00/none.png")
    with pytest.raises(NotFoundError, match="does not exist"):
        store.store_image(tmp_path / "nope.png")


def test_full_disk_is_a_storage_error_and_leaves_no_partial_file(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StorageError, match="disk is full"):
        store.store_mask(np.ones((8, 8), np.float32))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_full_disk_partway_through_a_file_is_a_storage_error_and_leaves_no_partial_file(
        tmp_path: Path, disk_fills_midway) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(StorageError, match="disk is full") as caught:
        store.store_image(np.zeros((16, 16, 3), np.uint8))
    assert caught.value.transient  # the worker tries again once space is freed
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_stored_images_and_masks_are_readable_by_other_users(tmp_path: Path, umask) -> None:
    """A QA lead's account or a backup job reading the data folder must be able to open the files."""
    umask(0o022)
    store = FileStore(tmp_path)
    rel_image, _ = store.store_image(np.zeros((8, 8, 3), np.uint8))
    rel_mask = store.store_mask(np.ones((8, 8), np.float32))
    for rel in (rel_image, rel_mask):
        assert stat.S_IMODE(store.path(rel).stat().st_mode) == 0o644, rel
