"""Errors raised by the storage package.

Every message names the thing, the cause and the fix, so the desktop app and the command line can show
it to a person unchanged. `StorageError.transient` says whether trying again later may succeed (a
locked or busy database, a full disk, a server that is down) or not (a damaged or read-only database,
a value the schema refuses): the worker retries the first kind with back-off and sets the second aside.
"""

from __future__ import annotations

import errno


class StorageError(Exception):
    """The inspection history or its files could not be read or written."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class NotFoundError(StorageError, LookupError):
    """A product, inspection or file that a caller named does not exist."""


def _describe(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's exception; its `orig` holds the driver's own message.
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).lower()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_locked(exc: BaseException) -> bool:
    text = _describe(exc)
    return "database is locked" in text or "database table is locked" in text


def is_busy(exc: BaseException) -> bool:
    """PostgreSQL gave up waiting (lock_timeout, statement_timeout) or the row was locked."""
    text = _describe(exc)
    return ("lock timeout" in text or "statement timeout" in text or "could not obtain lock" in text
            or "deadlock detected" in text or "could not serialize access" in text)


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    text = _describe(exc)
    return "database or disk is full" in text or "no space left on device" in text or "disk full" in text


def is_unreachable(exc: BaseException) -> bool:
    """The database server cannot be reached, or dropped the connection."""
    text = _describe(exc)
    return any(k in text for k in ("connection refused", "could not connect", "server closed the connection",
                                   "terminating connection", "connection is closed", "connection timeout",
                                   "could not translate host name", "the database system is starting up",
                                   "the database system is shutting down", "no route to host",
                                   "consuming input failed", "connection already closed", "ssl syscall"))


def is_read_only(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return True
    text = _describe(exc)
    return ("readonly database" in text or "read-only" in text or "permission denied" in text
            or "unable to open database file" in text)


def is_damaged(exc: BaseException) -> bool:
    text = _describe(exc)
    return ("file is not a database" in text or "database disk image is malformed" in text
            or "file is encrypted" in text)


def locked_error(where: str = "the inspection database") -> StorageError:
    return StorageError(
        f"{where} is locked: another program or station kept it busy for too long, so nothing was saved. "
        f"Close other programs that use it (or wait a moment) and try again.", transient=True
    )


def busy_error(where: str = "the inspection database") -> StorageError:
    return StorageError(
        f"{where} is busy: another station held a lock for longer than the time limit, so nothing was "
        f"saved yet. It is tried again shortly; if it persists, ask whoever runs the database server "
        f"what holds the lock.", transient=True
    )


def disk_full_error(where: str = "the inspection database") -> StorageError:
    return StorageError(
        f"could not write to {where}: the disk is full (database or disk is full), so nothing was saved. "
        f"Free space on that drive, or move the data folder in Settings > Storage, then try again.",
        transient=True,
    )


def unreachable_error(where: str, exc: BaseException) -> StorageError:
    return StorageError(
        f"cannot reach {where} ({_first_line(exc)}): the database server is down or the address is wrong. "
        f"Start the server (or check the network and the URL in Settings > Storage); results are kept "
        f"and saved when it is back.", transient=True
    )


def read_only_error(where: str, exc: BaseException) -> StorageError:
    return StorageError(
        f"cannot write to {where}: permission denied or read-only ({_first_line(exc)}). Make the file and "
        f"its folder writable for this user, or choose another location in Settings > Storage."
    )


def damaged_error(where: str, exc: BaseException) -> StorageError:
    return StorageError(
        f"{where} is not an IAD-GPT database or is damaged ({_first_line(exc)}). Restore it from a backup, "
        f"move it aside to start a new history, or choose another database in Settings > Storage."
    )


def translate(exc: BaseException, where: str = "the inspection database") -> StorageError | None:
    """The StorageError a person should see for `exc`, or None when it is not a known storage failure."""
    if isinstance(exc, StorageError):
        return exc
    if is_locked(exc):
        return locked_error(where)
    if is_busy(exc):
        return busy_error(where)
    if is_disk_full(exc):
        return disk_full_error(where)
    if is_unreachable(exc):
        return unreachable_error(where, exc)
    if is_damaged(exc):
        return damaged_error(where, exc)
    if is_read_only(exc):
        return read_only_error(where, exc)
    return None


def classify(exc: BaseException, where: str = "the inspection history") -> StorageError:
    """Any exception from storing a result, as a StorageError (transient or not) with a sentence.

    Unknown failures (a value the schema refuses, a bug) are permanent: trying the same row again
    would fail the same way, so it must not block the others.
    """
    known = translate(exc, where)
    if known is not None:
        if not known.transient and (is_locked(known) or is_busy(known) or is_disk_full(known)
                                    or is_unreachable(known)):
            known.transient = True  # raised without the flag, but its cause passes
        return known
    return StorageError(f"{where} refused this result ({type(exc).__name__}: {_first_line(exc)}); it is "
                        f"kept aside and the others are saved. The details are in the log.")
