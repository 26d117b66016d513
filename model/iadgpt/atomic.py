"""Writing files so that a reader never sees half of one: a temporary sibling, moved into place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path that is moved onto ``target`` when the block succeeds; the
    temporary file is removed whatever happens."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fsync(path: Path) -> None:
    """Flush a written file to the disk before it is moved into place."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
