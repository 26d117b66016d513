"""The inspection session: which source feeds the worker, and its live statistics.

Lives on the GUI thread but does no heavy work: sources capture on their own threads, the worker
inspects on its thread; this object only wires them and reports what is going on.

Reports are driven by events, not by a fast poll: a source's state changes come in through its
`on_state` callback (re-sent as a queued Qt signal, so they reach the GUI thread), each result or
failure the worker reports is counted with `count()`, and a camera's newest frame is signalled from
its capture thread (at most one waiting at a time). Only moving counters are refreshed by a slow
timer: a camera's (frames per second, dropped frames), and a folder's first scan (files found and
checked, which for a reopened folder means hashed) until it ends.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from iadgpt_desktop.workers.inference import InferenceWorker
from iadgpt_desktop.workers.sources import (
    CameraSource,
    FileListSource,
    FolderSource,
    NewestFrameQueue,
    OrderedQueue,
    ScanProgress,
    SourceState,
)

log = logging.getLogger(__name__)

COUNTER_REFRESH_MS = 500  # camera fps and drops, a folder scan's counts: slow enough to read, cheap to send


@dataclass(frozen=True)
class SessionStats:
    """What the Live view says about the running source."""

    source: str  # "files", "folder:/x", "camera:0"
    state: SourceState
    paused: bool = False
    captured: int = 0  # frames captured or files queued so far
    dropped: int = 0
    fps: float = 0.0
    waiting: int = 0  # queued for the worker, not inspected yet
    inspected: int = 0  # results shown this run
    failed: int = 0  # images that could not be inspected this run
    skipped: int = 0  # files left out as inspected before (a reopened folder resumes its batch)
    total: int | None = None  # a batch's size ("x of N"), skipped files not counted: what its source found
    # so far (a folder: every new image its scans found; a file list: None until expanded); None for a camera
    message: str = ""  # a source's problem (a camera reconnecting, a folder gone)
    watching: bool = False  # a folder that is watched for new images after its batch
    scan: ScanProgress | None = None  # a folder's first scan while it runs: nothing is queued before it ends

    @property
    def done(self) -> int:
        return self.inspected + self.failed


class TeeQueue(NewestFrameQueue):
    """A newest-frame queue for inference that also announces each frame for display.

    `on_frame` is called on the capture thread; the session turns it into a queued signal and asks
    for the next frame only once the previous one was drawn, so a slow GUI never piles frames up.
    """

    def __init__(self, capacity: int = 1, on_frame=None) -> None:
        super().__init__(capacity)
        self.latest = None
        self.on_frame = on_frame

    def put(self, frame) -> None:
        self.latest = frame
        super().put(frame)
        if self.on_frame is not None:
            self.on_frame(frame)


class InspectionSession(QObject):
    frame = Signal(object)  # newest camera frame (RGB array), at most the GUI's drawing rate
    stats = Signal(object)  # SessionStats
    finished = Signal(object)  # SessionStats: a batch (files, folder without watching) is fully inspected
    attach = Signal(object, str)  # -> worker.attach_queue
    detach = Signal()  # -> worker.detach_queue
    _state_changed = Signal()  # from a source's thread: re-read its state on the GUI thread
    _frame_ready = Signal(object)  # from a capture thread: a frame to draw

    def __init__(self, worker: InferenceWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.source = None
        self.queue = None
        self.name = ""
        self.paused = False
        self.inspected = self.failed = 0
        self._last: SessionStats | None = None
        self._frame_shown = threading.Event()
        self._frame_shown.set()
        self._counters = QTimer(self)
        self._counters.setInterval(COUNTER_REFRESH_MS)
        self._counters.timeout.connect(self._report)
        self._state_changed.connect(self._report)
        self._frame_ready.connect(self._show_frame)
        self.attach.connect(worker.attach_queue)
        self.detach.connect(worker.detach_queue)

    # -- opening sources ---------------------------------------------------------------------
    def _attach(self, source, queue, name: str) -> None:
        self.stop()
        self.source, self.queue, self.name = source, queue, name
        self.inspected, self.failed, self.paused = 0, 0, False
        self._last = None
        source.start()
        self.attach.emit(queue, name)
        if isinstance(source, (CameraSource, FolderSource)):
            self._counters.start()  # a folder's until its scan has ended (`_report`)
        self._report()

    def _on_source_state(self, _state, _message) -> None:
        self._state_changed.emit()  # queued: this runs on the source's thread

    def open_files(self, paths: list[Path]) -> None:
        """Inspect these files (folders among them expanded on the source's thread), none skipped."""
        queue = OrderedQueue()
        self._attach(FileListSource(paths, queue, on_state=self._on_source_state), queue, "files")

    def open_folder(self, folder: Path, watch: bool = True, skip=None) -> None:
        """Inspect a folder's images, leaving out those `skip(path)` says yes to. `skip` is called on the
        source's thread, file by file, during its first scan, so one that reads or hashes the file never
        blocks the GUI thread; the batch's size is what that scan finds."""
        queue = OrderedQueue()
        self._attach(FolderSource(folder, queue, watch=watch, skip=skip, on_state=self._on_source_state),
                     queue, f"folder:{folder}")

    def open_camera(self, spec: int | str) -> None:
        queue = TeeQueue(1, on_frame=self._on_camera_frame)
        self._attach(CameraSource(spec, queue, on_state=self._on_source_state), queue, f"camera:{spec}")

    def _on_camera_frame(self, frame) -> None:
        if self._frame_shown.is_set():  # capture thread: one frame in flight to the GUI at most
            self._frame_shown.clear()
            self._frame_ready.emit(frame.image)

    @Slot(object)
    def _show_frame(self, image) -> None:
        self._frame_shown.set()
        if self.source is not None:
            self.frame.emit(image)

    # -- control -----------------------------------------------------------------------------
    def pause(self) -> None:
        if self.source is None:
            return
        if isinstance(self.source, CameraSource):
            self.source.pause()
        self.detach.emit()
        self.worker.cancel()  # stop an answer being generated for the current frame
        self.paused = True
        self._report()

    def resume(self) -> None:
        if self.source is None:
            return
        if isinstance(self.source, CameraSource):
            self.source.resume()
        self.paused = False
        if self.queue is not None:
            self.attach.emit(self.queue, self.name)
        self._report()

    def stop(self) -> None:
        if self.source is None:
            return
        source = self.source
        source.stop()
        self.detach.emit()
        self._counters.stop()
        stats = self._stats()
        self.source = self.queue = None
        self.paused = False
        self.stats.emit(replace(stats, state=SourceState.STOPPED, waiting=0))

    @property
    def active(self) -> bool:
        return self.source is not None

    # -- what the worker reports -------------------------------------------------------------
    def count(self, failed: bool) -> None:
        """One image of this session's source was inspected (or could not be)."""
        if self.source is None:
            return
        if failed:
            self.failed += 1
        else:
            self.inspected += 1
        self._report()

    # -- reporting ---------------------------------------------------------------------------
    def _stats(self) -> SessionStats:
        source, queue = self.source, self.queue
        waiting = len(queue) if queue is not None else 0
        if isinstance(source, FolderSource):
            waiting += source.pending
        total = None
        if isinstance(source, FileListSource):
            total = source.total
        elif isinstance(source, FolderSource):
            total = source.enqueued + source.pending  # every new image its scans have found so far
        return SessionStats(
            source=self.name, state=source.state, paused=self.paused,
            captured=getattr(source, "frames_captured", getattr(source, "enqueued", 0)),
            dropped=getattr(queue, "dropped", 0), fps=getattr(source, "fps", 0.0), waiting=waiting,
            inspected=self.inspected, failed=self.failed, skipped=getattr(source, "skipped", 0), total=total,
            message=getattr(source, "last_error", None) or "",
            watching=isinstance(source, FolderSource) and source.watch,
            scan=source.scan if isinstance(source, FolderSource) else None)

    @Slot()
    def _report(self) -> None:
        if self.source is None:
            return
        stats = self._stats()
        if stats != self._last:
            self._last = stats
            self.stats.emit(stats)
        if isinstance(self.source, FolderSource) and stats.scan is None:
            self._counters.stop()  # the scan has ended: from here on its counts move with events
        if self._batch_complete(stats):
            self._counters.stop()
            self.source = self.queue = None
            self.finished.emit(stats)

    def _batch_complete(self, stats: SessionStats) -> bool:
        """A batch is complete once its source has finished reading (every file is queued or skipped)
        and every file it queued is inspected; or when the source failed. Not before the scan ends,
        even when nothing is queued yet: a folder whose files were all inspected before is a batch of
        0 only once its scan says so. A stopped source is not complete: `stop` reports it."""
        if isinstance(self.source, CameraSource):
            return False
        if stats.state is SourceState.FAILED:
            return True
        return stats.state is SourceState.FINISHED and stats.waiting == 0 and stats.done >= stats.captured
