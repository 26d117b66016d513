"""Writing files so that a reader never sees half of one: a temporary sibling, moved into place.

The one way the project replaces a file (docs/decisions/0010-atomic-writes.md): memory banks,
reference indexes, trained weights and trainer checkpoints (`atomic_path`, for writers that take a
path); exports, settings, prompt banks and the unsaved-results journal's rewrite (`atomic_open`, for
writers that take a file object); anomaly-map PNGs and the desktop app's stored images and masks
(`atomic_write_bytes`).
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` for the block to write in full; when the block
    succeeds the file is fsynced and moved onto ``target`` with ``os.replace``, and on POSIX the
    folder is fsynced too, so that the move itself survives a power cut.

    A reader (or a restart after a crash) sees the old file or the whole new one, never part of one.
    On any failure (an exception in the block, such as a full disk halfway through the write, a
    failed fsync or move, Ctrl+C) the temporary file is removed, ``target`` is left as it was and the
    exception goes on to the caller unchanged, for the caller to word for its user. Only a process
    that is killed outright (or a power cut) mid-write can leave the temporary file behind; it is
    hidden, never read, and safe to delete.

    The file gets the mode a plain ``open()`` of ``target`` would create: 0o666 less the umask, so
    other users (another account on the station, a backup job) can read it where the umask allows.
    Writers that create 0o600 files do not decide it (``tempfile.mkstemp``; safetensors since 0.8
    renames its own 0o600 temporary file over the path). The name starts with a dot and ends in
    ``.tmp``, so folder scans skip it. The folder must exist.
    """
    target = Path(target)
    # A random part keeps two threads saving the same file apart; the name is cut short so that a
    # target name near the 255-byte limit still leaves room for the prefix and suffix.
    tmp = target.with_name(f".{target.name[:50]}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as fh:  # created by open(), so the umask sets its mode
            mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # the writer renamed its own file over ours
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as fh:  # the data on the disk before the name points at it
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as exc:  # e.g. the folder turned read-only; the first error is the one to report
            log.warning("could not remove temporary file %s: %s", tmp, exc)
        raise
    _fsync_folder(target.parent)


@contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a file for writing (``mode`` "wb" or "w"; ``kwargs`` as for `open`, e.g. ``encoding``,
    ``newline``) that replaces ``target`` through `atomic_path` when the block ends without an error
    (same guarantees and permissions)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``target`` with ``data`` through `atomic_path` (same guarantees and permissions)."""
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def _fsync_folder(folder: Path) -> None:
    """Flush the folder's entry for a file just moved into it (POSIX). Windows cannot open a folder
    as a file, and some file systems refuse to fsync one; the file is already in place, so neither
    is an error."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        log.debug("cannot open folder %s to fsync it: %s", folder, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("cannot fsync folder %s: %s", folder, exc)
    finally:
        os.close(fd)
