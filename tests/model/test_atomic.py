"""Tests of iadgpt.atomic: a file is replaced whole or not at all, and nothing is left beside it."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from iadgpt import atomic
from iadgpt.atomic import atomic_open, atomic_path, atomic_write_bytes
from iadgpt.imageio import iter_image_files

posix_modes = pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "result.png"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(str(target), b"new contents")
    assert target.read_bytes() == b"new contents"
    assert _files(tmp_path) == ["result.png"]


def test_full_disk_halfway_keeps_the_old_file_and_no_temporary_file(tmp_path: Path, disk_fills_midway) -> None:
    target = tmp_path / "bank.bin"
    target.write_bytes(b"the previous, complete file")
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"x" * 10_000)
    assert caught.value.errno == errno.ENOSPC  # the caller words it for its user
    assert target.read_bytes() == b"the previous, complete file"
    assert _files(tmp_path) == ["bank.bin"]


def test_a_text_file_is_written_whole_with_its_encoding_and_newlines(tmp_path: Path) -> None:
    target = tmp_path / "export.csv"
    with atomic_open(target, "w", encoding="utf-8", newline="") as fh:
        fh.write("id,answer\r\n1,Ünïcödé\r\n")
    assert target.read_bytes() == "id,answer\r\n1,Ünïcödé\r\n".encode()
    assert _files(tmp_path) == ["export.csv"]


def test_a_text_file_on_a_disk_that_fills_keeps_the_old_file(tmp_path: Path, disk_fills_midway) -> None:
    target = tmp_path / "settings.json"
    target.write_text("{}", encoding="utf-8")
    with pytest.raises(OSError) as caught, atomic_open(target, "w", encoding="utf-8") as fh:
        fh.write("x" * 100)
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text(encoding="utf-8") == "{}" and _files(tmp_path) == ["settings.json"]


@pytest.mark.parametrize("mode", ["a", "r+", "x", "ab"])
def test_atomic_open_only_replaces_whole_files(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"), atomic_open(tmp_path / "j.jsonl", mode):
        pass
    assert _files(tmp_path) == []


def test_a_writer_failing_halfway_through_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"old weights")
    with pytest.raises(OSError, match="No space"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_bytes() == b"old weights"
    assert _files(tmp_path) == ["weights.safetensors"]


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_failed_fsync_or_move_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   step: str) -> None:
    target = tmp_path / "map.png"
    target.write_bytes(b"old map")

    def fail(*args: object) -> None:
        raise OSError(errno.ENOSPC if step == "fsync" else errno.EACCES, f"{step} failed")

    monkeypatch.setattr(os, step, fail)
    with pytest.raises(OSError, match=f"{step} failed"):
        atomic_write_bytes(target, b"new map")
    assert target.read_bytes() == b"old map"
    assert _files(tmp_path) == ["map.png"]


def test_an_interrupt_in_the_block_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("{")
        raise KeyboardInterrupt
    assert _files(tmp_path) == []


def test_a_temporary_file_that_cannot_be_removed_does_not_hide_the_first_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(errno.EACCES, "read-only folder")

    monkeypatch.setattr(Path, "unlink", refuse)
    with caplog.at_level(logging.WARNING, logger=atomic.__name__), pytest.raises(OSError) as caught:
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"x")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert caught.value.errno == errno.ENOSPC
    assert "could not remove temporary file" in caplog.text


def test_the_temporary_file_is_a_hidden_sibling_of_its_own(tmp_path: Path) -> None:
    """Beside the target (so the move stays on one file system), hidden from folder scans, and
    different for two writers of the same file at once (two threads of one process)."""
    target = tmp_path / "part.png"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        for tmp in (first, second):
            tmp.write_bytes(b"\x89PNG")
            assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        assert iter_image_files([tmp_path]) == []
    assert _files(tmp_path) == ["part.png"]


def test_a_name_at_the_length_limit_can_be_written(tmp_path: Path) -> None:
    target = tmp_path / ("m" * 251 + ".png")  # 255 bytes, the usual limit for one name
    atomic_write_bytes(target, b"ok")
    assert target.read_bytes() == b"ok"


@posix_modes
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_a_plain_write_would(tmp_path: Path, umask, mask: int, expected: int) -> None:
    """Not 0o600 as mkstemp and safetensors (since 0.8) create it: other users (a QA lead's account,
    a backup job) can read what was written unless the umask says otherwise; a replaced file too."""
    umask(mask)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    replaced = tmp_path / "replaced.bin"
    replaced.write_bytes(b"old")
    os.chmod(replaced, 0o600)
    atomic_write_bytes(replaced, b"new")
    with atomic_path(tmp_path / "by-path.bin") as tmp:
        tmp.write_bytes(b"new")
    with atomic_path(tmp_path / "bank.safetensors") as tmp:
        save_file({"layer_0": torch.zeros(2, 3)}, str(tmp))
    for path in (plain, replaced, tmp_path / "by-path.bin", tmp_path / "bank.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path.name
    assert len(load_file(tmp_path / "bank.safetensors")["layer_0"]) == 2


@pytest.mark.skipif(os.name == "nt", reason="Windows cannot open a folder to fsync it")
def test_the_folder_is_fsynced_after_the_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """So that a power cut right after a save does not undo the rename (the file's data was fsynced
    before it)."""
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        steps.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(tmp_path / "bank.safetensors", b"new")
    assert steps == ["fsync file", "replace", "fsync folder"]


@pytest.mark.parametrize("fails", ["open", "fsync"])
def test_a_folder_that_cannot_be_fsynced_does_not_fail_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 fails: str) -> None:
    """Opening a folder fails on Windows, and some network or FUSE file systems refuse to fsync one;
    the file is in place by then, so the write has succeeded."""
    real_open, real_fsync = os.open, os.fsync

    def folder_open(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if fails == "open" and Path(path).is_dir():
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args)

    def folder_fsync(fd: int) -> None:
        if fails == "fsync" and stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "open", folder_open)
    monkeypatch.setattr(os, "fsync", folder_fsync)
    target = tmp_path / "map.png"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and _files(tmp_path) == ["map.png"]
