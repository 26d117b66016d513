"""The inspection session: which source feeds the worker, and its live statistics.

Lives on the GUI thread but does no heavy work: sources capture on their own threads, the worker
inspects on its thread; this object only wires them and polls counters for display.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from iadgpt_desktop.workers.inference import InferenceWorker
from iadgpt_desktop.workers.sources import (
    CameraSource,
    FileListSource,
    FolderSource,
    NewestFrameQueue,
    OrderedQueue,
    SourceState,
)

log = logging.getLogger(__name__)

_DONE = {SourceState.FINISHED, SourceState.STOPPED, SourceState.FAILED}


class TeeQueue(NewestFrameQueue):
    """A newest-frame queue for inference that also keeps the latest frame for display."""

    def __init__(self, capacity: int = 1) -> None:
        super().__init__(capacity)
        self.latest = None

    def put(self, frame) -> None:
        self.latest = frame
        super().put(frame)


class InspectionSession(QObject):
    frame = Signal(object)  # newest camera frame (RGB array), at the camera's rate, for display
    stats = Signal(dict)  # source name, state, captured, dropped, fps, inspected, message
    finished = Signal(str)  # a finite source (files, folder without watching) is fully inspected
    attach = Signal(object, str)  # -> worker.attach_queue
    detach = Signal()  # -> worker.detach_queue

    def __init__(self, worker: InferenceWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.source = None
        self.queue = None
        self.name = ""
        self._last_shown = None
        self._timer = QTimer(self)
        self._timer.setInterval(15)
        self._timer.timeout.connect(self._poll)
        self.attach.connect(worker.attach_queue)
        self.detach.connect(worker.detach_queue)

    def _attach(self, source, queue, name: str) -> None:
        self.stop()
        self.source, self.queue, self.name = source, queue, name
        source.start()
        self.worker_attach(queue, name)
        self._timer.start()

    def worker_attach(self, queue, name: str) -> None:
        # A queued signal: the worker (on its thread) polls this queue between frames.
        self.attach.emit(queue, name)

    def open_files(self, paths: list[Path]) -> None:
        queue = OrderedQueue()
        self._attach(FileListSource(paths, queue), queue, "files")

    def open_folder(self, folder: Path, watch: bool = True, skip=None) -> None:
        queue = OrderedQueue()
        self._attach(FolderSource(folder, queue, watch=watch, skip=skip), queue, f"folder:{folder}")

    def open_camera(self, spec: int | str) -> None:
        queue = TeeQueue(1)
        self._attach(CameraSource(spec, queue), queue, f"camera:{spec}")

    def pause(self) -> None:
        if isinstance(self.source, CameraSource):
            self.source.pause()
        self.detach.emit()
        self.worker.cancel()  # stop an answer being generated for the current frame

    def resume(self) -> None:
        if isinstance(self.source, CameraSource):
            self.source.resume()
        if self.queue is not None:
            self.worker_attach(self.queue, self.name)

    def stop(self) -> None:
        if self.source is not None:
            self.source.stop()
            self.detach.emit()
        self.source = self.queue = None
        self._timer.stop()

    @property
    def active(self) -> bool:
        return self.source is not None

    def _poll(self) -> None:
        source, queue = self.source, self.queue
        if source is None:
            return
        if isinstance(queue, TeeQueue) and queue.latest is not None and queue.latest is not self._last_shown:
            self._last_shown = queue.latest
            self.frame.emit(queue.latest.image)
        state = source.state
        info = {
            "source": self.name, "state": state.value if hasattr(state, "value") else str(state),
            "captured": getattr(source, "frames_captured", getattr(source, "enqueued", 0)),
            "dropped": getattr(queue, "dropped", 0), "fps": getattr(source, "fps", 0.0),
            "message": getattr(source, "last_error", None) or "",
            "pending": len(queue) if queue is not None else 0,
        }
        self.stats.emit(info)
        if state in _DONE and queue is not None and len(queue) == 0 and not isinstance(source, CameraSource):
            name = self.name
            self._timer.stop()
            self.source = self.queue = None
            self.finished.emit(name)

