"""Writing files so that a reader never sees half of one: a temporary sibling, moved into place.

The one way the project replaces a file: memory banks, reference indexes and trained weights
(`atomic_path`, for writers that take a path), anomaly-map PNGs and the desktop app's stored images
and masks (`atomic_write_bytes`).
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` for the block to write in full; when the block
    succeeds the file is fsynced and moved onto ``target`` with ``os.replace``.

    A reader (or a restart after a crash) sees the old file or the whole new one, never part of one.
    On any failure (an exception in the block, such as a full disk halfway through the write, a
    failed fsync or move, Ctrl+C) the temporary file is removed, ``target`` is left as it was and the
    exception goes on to the caller unchanged, for the caller to word for its user.

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
        fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as exc:  # e.g. the folder turned read-only; the first error is the one to report
            log.warning("could not remove temporary file %s: %s", tmp, exc)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``target`` with ``data`` through `atomic_path` (same guarantees and permissions)."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def fsync(path: Path) -> None:
    """Flush a written file to the disk (`atomic_path` does this itself before the move)."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
