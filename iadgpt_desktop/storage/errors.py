"""Errors raised by the storage package.

Every message names the thing, the cause and the fix, so the desktop app and the command line can show
it to a person unchanged.
"""

from __future__ import annotations

import errno


class StorageError(Exception):
    """The inspection history or its files could not be read or written."""


class NotFoundError(StorageError, LookupError):
    """A product, inspection or file that a caller named does not exist."""


def _describe(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's exception; its `orig` holds the driver's own message.
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).lower()


def is_locked(exc: BaseException) -> bool:
    text = _describe(exc)
    return "database is locked" in text or "database table is locked" in text


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    text = _describe(exc)
    return "database or disk is full" in text or "no space left on device" in text or "disk full" in text


def locked_error(where: str = "the inspection database") -> StorageError:
    return StorageError(
        f"{where} is locked: another program or station kept it busy for too long, so nothing was saved. "
        f"Close other programs that use it (or wait a moment) and try again."
    )


def disk_full_error(where: str = "the inspection database") -> StorageError:
    return StorageError(
        f"could not write to {where}: the disk is full (database or disk is full), so nothing was saved. "
        f"Free space on that drive, or move the data folder in Settings > Storage, then try again."
    )


def translate(exc: BaseException, where: str = "the inspection database") -> StorageError | None:
    """The StorageError a person should see for `exc`, or None when it is not a known storage failure."""
    if isinstance(exc, StorageError):
        return exc
    if is_locked(exc):
        return locked_error(where)
    if is_disk_full(exc):
        return disk_full_error(where)
    return None
