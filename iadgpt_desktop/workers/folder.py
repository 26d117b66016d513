"""Image files from a folder (watched for new ones) or a list of paths, queued on their own thread.

They feed an `OrderedQueue`: every file, in order, none dropped; the queue is bounded and `put`
blocks, so a slow worker throttles the folder scan instead of the scan piling every path up in
memory. File sources hand out paths only (``Frame.image`` is None): the consumer loads the file
itself, so a decoding error surfaces there, next to the file it belongs to.

Importing this module installs a filter on the ``iadgpt.imageio`` logger (`_QuietRescans`) that
keeps a folder's re-scans quiet.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from iadgpt.errors import ImageLoadError
from iadgpt.imageio import iter_image_files
from iadgpt_desktop.workers.frames import STOP_SLICE, Frame, OrderedQueue, SourceState
from iadgpt_desktop.workers.source_base import StateCallback, ThreadedSource

log = logging.getLogger(__name__)

__all__ = ["FileListSource", "FolderSource", "ScanProgress"]

EMPTY_SETTLE_FACTOR = 4  # an empty file settles after this many settle times (then the consumer reports it)


class _QuietRescans(logging.Filter):
    """Silence iadgpt.imageio's per-scan notes ("no image files found", unreadable subfolders)
    while a folder source re-scans, so polling twice a second does not flood the log; the first
    scan of a folder logs them normally."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(self.local, "rescanning", False) and record.levelno <= logging.WARNING)


_quiet_rescans = _QuietRescans()
logging.getLogger("iadgpt.imageio").addFilter(_quiet_rescans)


@dataclass(frozen=True)
class ScanProgress:
    """How far a folder's first scan is, while it runs: the scan lists the folder, then checks each file
    with the consumer's `skip` (hashing it, for a reopened folder), before any file is queued."""

    listed: int | None  # image files in the folder; None until it is listed
    checked: int  # files checked so far
    found: int  # of them, new ones to inspect (not skipped)


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    stable_since: float  # time.monotonic() when (size, mtime) were last seen to change


class _FileSource(ThreadedSource):
    """What both file sources share: the queue they fill, the consumer's `skip`, the frame count."""

    def __init__(self, source_id: str, queue: OrderedQueue, skip: Callable[[Path], bool] | None,
                 on_state: StateCallback | None) -> None:
        super().__init__(source_id, on_state)
        self.queue = queue
        self.skip = skip
        self._reset()

    @property
    def enqueued(self) -> int:
        return self._enqueued

    @property
    def skipped(self) -> int:
        """Files left out by `skip`."""
        return self._skipped

    def _reset(self) -> None:
        self._enqueued = 0
        self._skipped = 0

    def _wake(self) -> None:
        self.queue.interrupt()

    def _skipped_by_consumer(self, path: Path) -> bool:
        """`skip(path)`, counted; a `skip` that raises is logged and the file inspected."""
        if self.skip is None:
            return False
        try:
            skipped = bool(self.skip(path))
        except Exception:
            log.exception("skip() of %s failed for %s; the file is inspected", self.source_id, path)
            return False
        if skipped:
            self._skipped += 1
        return skipped

    def _put(self, path: Path) -> bool:
        """Queue the next frame (waits for room); False if the source was stopped meanwhile."""
        frame = Frame(source=self.source_id, index=self._enqueued, timestamp=time.time(), path=path)
        if not self.queue.put(frame, stop=self._stop_event):
            return False
        self._enqueued += 1
        return True


class FolderSource(_FileSource):
    """Every image in a folder (recursively, `iter_image_files` order), then new ones as they come.

    Each file is enqueued once its size and modification time have stayed the same for
    `settle_time` seconds (an empty file for `EMPTY_SETTLE_FACTOR` times as long: a writer may create
    it before its first write), so a file still being written or copied is not picked up
    half-written. A file that stays empty is handed on all the same, so that the consumer reports
    it (and the batch goes on) instead of it waiting for ever. Files are enqueued in the order they
    were found; one still being written waits on its own without holding back those after it, which
    go ahead of it. With `watch`, the folder is polled every `poll_interval` seconds
    for files not seen before; without it, the source is FINISHED once the files found at start
    are enqueued. `skip(path)` returning True leaves a file out (already inspected: resuming a
    batch); the first scan runs `skip` on every file before it queues any (the source is
    CONNECTING meanwhile, `scan` says how far it is), and a stop request ends it between two
    files. A file seen once is not enqueued again, even if rewritten. A folder that disappears
    (deleted, renamed, drive or share disconnected) makes the source FAILED with `last_error`.
    """

    _thread_prefix = "folder"
    _open_again = "open it again with Open folder…"

    def __init__(
        self,
        folder: str | os.PathLike[str],
        queue: OrderedQueue,
        *,
        watch: bool = True,
        poll_interval: float = 0.5,
        settle_time: float = 0.5,
        skip: Callable[[Path], bool] | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval}")
        if settle_time < 0:
            raise ValueError(f"settle_time must be >= 0 seconds, got {settle_time}")
        self.folder = Path(folder)
        self.watch = watch
        self.poll_interval = float(poll_interval)
        self.settle_time = float(settle_time)
        super().__init__(f"folder:{self.folder}", queue, skip, on_state)

    @property
    def pending(self) -> int:
        """Files found but not yet enqueued (still being written, or waiting for room)."""
        return self._pending_count

    @property
    def scan(self) -> ScanProgress | None:
        """How far the first scan is; None once it has ended (or the source stopped or failed)."""
        if self._state is not SourceState.CONNECTING:
            return None
        return ScanProgress(self._listed, self._checked, self._pending_count)

    def _reset(self) -> None:
        super()._reset()
        self._pending_count = 0
        self._listed: int | None = None
        self._checked = 0

    def _label(self) -> str:
        return f"folder {self.folder}"

    def _folder_gone(self) -> bool:
        """True (after failing) if the folder is no longer there."""
        if self.folder.is_dir():
            return False
        if self.folder.exists():
            self._fail(f"cannot watch {self._label()}: it is not a folder; choose a folder")
        else:
            self._fail(
                f"{self._label()} is no longer reachable (deleted, renamed, or its drive or network "
                f"share disconnected); reconnect it and {self._open_again}"
            )
        return True

    def _scan(self, first: bool) -> list[Path] | None:
        """The image files now in the folder, or None (after failing) if it cannot be read."""
        if self._folder_gone():
            return None
        _quiet_rescans.local.rescanning = not first
        try:
            return iter_image_files([self.folder])
        except ImageLoadError as exc:
            if not self._folder_gone():
                self._fail(f"cannot read {self._label()}: {exc}")
            return None
        finally:
            _quiet_rescans.local.rescanning = False

    @staticmethod
    def _stat(path: Path) -> tuple[int, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return info.st_size, info.st_mtime_ns

    def _run(self) -> None:
        seen: set[Path] = set()
        pending: dict[Path, _Pending] = {}  # insertion order: files found at start first, in order
        first = True
        while not self._stopping():
            if first or self.watch:
                files = self._scan(first)
                if files is None:
                    return
                if first:
                    self._listed = len(files)
                for path in files:
                    if self._stopping():
                        return  # a skip test per file (a hash) can take long over thousands of files
                    if path in seen:
                        continue
                    seen.add(path)
                    if not self._skipped_by_consumer(path):
                        observed = self._stat(path)
                        if observed is not None:
                            # Seen now, not when the scan began: checking the files before it can take long.
                            pending[path] = _Pending(observed[0], observed[1], time.monotonic())
                            self._pending_count = len(pending)
                    if first:
                        self._checked += 1
                if first:
                    self._set_state(SourceState.STREAMING, f"reading {self._label()}")
                    first = False
            elif self._folder_gone():
                return
            self._pending_count = len(pending)
            if not self._enqueue_settled(pending):
                return  # stopped while waiting for room in the queue
            self._pending_count = len(pending)
            if not self.watch and not pending:
                self._set_state(SourceState.FINISHED, f"all images of {self._label()} queued")
                return
            wait = self.poll_interval
            if pending:
                wait = min(wait, max(self.settle_time / 2, STOP_SLICE))
            if self._stop_event.wait(wait):
                return

    def _enqueue_settled(self, pending: dict[Path, _Pending]) -> bool:
        """Enqueue the pending files that have settled; False if stopped while waiting.

        One that has not settled yet is passed over, not waited for: a file still being written must
        not hold back those after it (nor an empty one the whole batch)."""
        now = time.monotonic()
        ready: list[Path] = []
        for path, entry in list(pending.items()):
            observed = self._stat(path)
            if observed is None:
                del pending[path]  # removed or renamed before it settled
                continue
            if observed != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns = observed
                entry.stable_since = now
            settle = self.settle_time * (EMPTY_SETTLE_FACTOR if entry.size == 0 else 1)
            if now - entry.stable_since >= settle:
                ready.append(path)
        for path in ready:
            if not self._put(path):
                return False
            del pending[path]
            self._pending_count = len(pending)  # queued or pending, never both, for a reader's count
        return True


class FileListSource(_FileSource):
    """The given files (folders expanded with `iter_image_files`), in order, then FINISHED.

    A path that does not exist makes the source FAILED before anything is enqueued (`last_error`
    names it). Files named directly are enqueued whatever their suffix, so the consumer reports a
    wrong file instead of it vanishing.
    """

    _thread_prefix = "files"
    _open_again = "open them again with Open files…"

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        queue: OrderedQueue,
        *,
        skip: Callable[[Path], bool] | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        super().__init__("files", queue, skip, on_state)

    @property
    def total(self) -> int | None:
        """How many files the list expanded to (None until expanded)."""
        return self._total

    def _reset(self) -> None:
        super()._reset()
        self._total: int | None = None

    def _label(self) -> str:
        return f"{len(self.paths)} selected path(s)"

    def _run(self) -> None:
        try:
            files = iter_image_files(self.paths)
        except ImageLoadError as exc:
            self._fail(str(exc))
            return
        files = [f for f in files if not self._skipped_by_consumer(f)]
        self._total = len(files)
        self._set_state(SourceState.STREAMING, f"queueing {len(files)} file(s)")
        for path in files:
            if not self._put(path):
                return
        self._set_state(SourceState.FINISHED, f"{len(files)} file(s) queued")
