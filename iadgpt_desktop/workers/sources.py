"""Image sources for the inspection station: cameras, video files, streams, folders and file lists.

Plain Python threads, no Qt: each source runs its own thread and feeds a queue that the inference
worker drains (see the "Desktop application" section of docs/DESIGN.md).

* Cameras, streams and video files feed a `NewestFrameQueue`: the worker always gets the newest
  frame, older ones are dropped and counted, so a slow model never makes the picture lag.
* Folders and file lists feed an `OrderedQueue`: every file, in order, none dropped; the queue is
  bounded and `put` blocks, so a slow worker throttles the folder scan instead of the scan piling
  every path up in memory.

File sources hand out paths only (``Frame.image`` is None): the consumer loads the file itself, so a
decoding error surfaces there, next to the file it belongs to.

Counters and states are read from other threads without locks; each is a single attribute written
by one thread, which is safe in CPython.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from iadgpt.errors import ImageLoadError
from iadgpt.imageio import iter_image_files, load_image

log = logging.getLogger(__name__)

__all__ = [
    "CameraSource",
    "FileListSource",
    "FolderSource",
    "Frame",
    "NewestFrameQueue",
    "OrderedQueue",
    "SourceState",
]

_STOP_SLICE = 0.05  # seconds: how often blocking waits re-check their stop condition
_JOIN_TIMEOUT = 5.0  # seconds stop() waits for a thread (a stream's read can block for a while)
_DEFAULT_FPS = 30.0


# --------------------------------------------------------------------------------------------
# Frames and queues
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: frames compare by identity (arrays have no plain ==)
class Frame:
    """One unit of work for the inference worker.

    `source` names where it came from ("camera:0", "camera:rtsp://host/x", "folder:/data/in",
    "files"); `index` counts from 0 per source run; `timestamp` is `time.time()` at capture or
    enqueueing. File sources set `path` and leave `image` None (the consumer loads the file);
    cameras set `image`, an RGB uint8 (H, W, 3) array, and leave `path` None.
    """

    source: str
    index: int
    timestamp: float
    path: Path | None = None
    image: np.ndarray | None = None


StopCondition = threading.Event | Callable[[], bool] | None


def _should_stop(stop: StopCondition) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


class NewestFrameQueue:
    """A thread-safe queue that keeps only the newest `capacity` frames.

    `put` never blocks: when the queue is full the OLDEST frame is discarded and counted in
    `dropped`. `get` hands out the oldest frame kept and counts it in `delivered`, so for a source
    that only puts, ``delivered + dropped + len(queue)`` equals the frames put.
    """

    def __init__(self, capacity: int = 1) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self._delivered = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            while len(self._frames) >= self.capacity:
                self._frames.popleft()
                self._dropped += 1
            self._frames.append(frame)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest frame kept, waiting up to `timeout` seconds (None: forever; 0: no wait)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._frames), timeout):
                return None
            self._delivered += 1
            return self._frames.popleft()

    def clear(self) -> int:
        """Discard the frames kept; they count as dropped. Returns how many were discarded."""
        with self._cond:
            count = len(self._frames)
            self._frames.clear()
            self._dropped += count
            return count

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def delivered(self) -> int:
        return self._delivered

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


class OrderedQueue:
    """A thread-safe, bounded FIFO that never drops: `put` waits while the queue is full.

    The wait re-checks a stop condition (an Event or a callable) every few tens of milliseconds,
    and `interrupt()` makes waiting puts re-check it at once, so a producer blocked by a slow
    consumer can always be stopped.
    """

    def __init__(self, maxsize: int = 16) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive integer, got {maxsize!r}")
        self.maxsize = maxsize
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._delivered = 0
        self._enqueued = 0

    def put(self, frame: Frame, stop: StopCondition = None, timeout: float | None = None) -> bool:
        """Append `frame`, waiting while the queue is full.

        Returns True once the frame is queued, False (frame not queued) when `stop` became set or
        `timeout` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._frames) >= self.maxsize:
                if _should_stop(stop):
                    return False
                wait = _STOP_SLICE
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    wait = min(wait, left)
                self._cond.wait(wait)
            if _should_stop(stop):
                return False
            self._frames.append(frame)
            self._enqueued += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest frame, waiting up to `timeout` seconds (None: forever; 0: no wait)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._frames), timeout):
                return None
            frame = self._frames.popleft()
            self._delivered += 1
            self._cond.notify_all()  # a producer may be waiting for room
            return frame

    def interrupt(self) -> None:
        """Wake every waiting `put` so that it re-checks its stop condition now."""
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> int:
        """Discard the frames waiting; returns how many were discarded."""
        with self._cond:
            count = len(self._frames)
            self._frames.clear()
            self._cond.notify_all()
            return count

    @property
    def delivered(self) -> int:
        return self._delivered

    @property
    def enqueued(self) -> int:
        return self._enqueued

    @property
    def dropped(self) -> int:
        """Always 0: this queue never drops (present so it reads like `NewestFrameQueue`)."""
        return 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


# --------------------------------------------------------------------------------------------
# States and the thread plumbing shared by every source
# --------------------------------------------------------------------------------------------


class SourceState(str, Enum):  # noqa: UP042 (the agreed API; StrEnum would change str())
    """What a source is doing; the value is a lower-case word for display and logs."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"


_TERMINAL = frozenset({SourceState.FINISHED, SourceState.STOPPED, SourceState.FAILED})

StateCallback = Callable[[SourceState, str], Any]


class _ThreadedSource:
    """Thread start/stop, the state and its callback; subclasses implement `_run`."""

    _thread_prefix = "source"

    def __init__(self, source_id: str, on_state: StateCallback | None) -> None:
        self.source_id = source_id
        self._on_state = on_state
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = SourceState.CONNECTING
        self.last_error: str | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def running(self) -> bool:
        """True while the source thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the source thread. A source that ended (finished, stopped, failed) may be
        started again; starting a running source raises RuntimeError."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.source_id} is already running; stop it first")
            self._stop_event = threading.Event()
            self.last_error = None
            self._reset()
            self._state = SourceState.CONNECTING
            self._thread = threading.Thread(
                target=self._thread_main, name=f"{self._thread_prefix} {self.source_id}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop the thread and wait for it (at most `timeout` seconds). State STOPPED unless the
        source had already finished or failed."""
        self._stop_event.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.1f s; leaving its thread behind", self.source_id, timeout)
        if self._state not in (SourceState.FINISHED, SourceState.FAILED):
            self._set_state(SourceState.STOPPED, f"{self._label()} stopped")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end on its own; True if it has ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- for subclasses ----------------------------------------------------------------------

    def _reset(self) -> None:
        """Reset per-run counters before a (re)start."""

    def _wake(self) -> None:
        """Wake the thread from any wait so that it sees the stop request."""

    def _label(self) -> str:
        return self.source_id

    def _run(self) -> None:
        raise NotImplementedError

    def _stopping(self) -> bool:
        return self._stop_event.is_set()

    def _set_state(self, state: SourceState, message: str = "", *, announce: bool = False) -> None:
        """Change the state and call on_state; `announce` calls it even if the state is unchanged."""
        with self._lock:
            if state == self._state and not announce:
                return
            if self._state in _TERMINAL:
                # Only start() leaves an ended state: a late transition must not undo stop(),
                # the end of a file or a failure.
                return
            self._state = state
        log.debug("%s: %s (%s)", self.source_id, state.value, message)
        if self._on_state is not None:
            try:
                self._on_state(state, message)
            except Exception:
                log.exception("on_state callback of %s failed", self.source_id)

    def _fail(self, message: str) -> None:
        self.last_error = message
        log.warning("%s", message)
        self._set_state(SourceState.FAILED, message)

    def _thread_main(self) -> None:
        try:
            self._set_state(SourceState.CONNECTING, f"opening {self._label()}", announce=True)
            self._run()
        except Exception as exc:  # a bug or an unexpected OS error must not die silently
            log.exception("%s failed", self.source_id)
            self._fail(f"{self._label()} failed unexpectedly ({type(exc).__name__}: {exc}); press Start to retry")
        finally:
            if self._state not in _TERMINAL:
                self._set_state(SourceState.STOPPED, f"{self._label()} stopped")


# --------------------------------------------------------------------------------------------
# Cameras, streams and video files
# --------------------------------------------------------------------------------------------


def _redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or gray; any depth) as RGB uint8 (H, W, 3)."""
    if image.dtype == np.uint8:
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    # Rare (16-bit or float cameras): reorder the channels, then the library's fixed scaling.
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[:, :, [2, 1, 0]]
    return load_image(image)


class CameraSource(_ThreadedSource):
    """Frames from a camera (device index), a stream URL (rtsp/http/...) or a video file.

    The capture thread reads frames, converts them to RGB and puts them into a
    `NewestFrameQueue`.

    * Video files are paced to their own frame rate (CAP_PROP_FPS, 30 if unknown) when
      `realtime` (the default for files), so a file behaves like a live camera; at the end the
      state becomes FINISHED, or the file starts over with `loop=True`.
    * Cameras and streams: when frames stop coming (unplugged, network down) the state becomes
      RECONNECTING, the capture is released and reopened after each delay of `reconnect_backoff`
      (its last value repeats) until frames come again (STREAMING) or `max_reconnects` attempts
      failed (FAILED, with `last_error`; None: retry forever).
    * `pause()` stops delivering frames (a live source keeps grabbing and discarding them, so the
      first frame after `resume()` is fresh); a file simply waits.

    `on_state(state, message)` is called from the capture thread on every state change (and from
    the caller's thread for `stop()`).
    """

    _thread_prefix = "capture"

    def __init__(
        self,
        spec: int | str | os.PathLike[str],
        queue: NewestFrameQueue,
        *,
        reconnect_backoff: Sequence[float] = (0.5, 1, 2, 5),
        max_reconnects: int | None = None,
        realtime: bool | None = None,
        loop: bool = False,
        capture_factory: Callable[[Any], Any] = cv2.VideoCapture,
        on_state: StateCallback | None = None,
    ) -> None:
        if isinstance(spec, bool):
            raise TypeError("spec must be a camera index, a stream URL or a video file path, not a bool")
        if isinstance(spec, str) and spec.strip().isdigit():
            spec = int(spec.strip())
        if isinstance(spec, int):
            if spec < 0:
                raise ValueError(f"camera index must be 0 or more, got {spec}")
            self.kind = "device"
            self._open_arg: Any = spec
            label = f"camera {spec}"
            shown = str(spec)
        elif isinstance(spec, (str, os.PathLike)):
            text = os.fspath(spec)
            if isinstance(text, bytes):
                text = os.fsdecode(text)
            if not text.strip():
                raise ValueError("spec is empty; give a camera index, a stream URL or a video file path")
            if "://" in text:
                self.kind = "stream"
                self._open_arg = text
                shown = _redact_url(text)
                label = f"stream {shown}"
            else:
                self.kind = "file"
                self._open_arg = text
                shown = text
                label = f"video file {text}"
        else:
            raise TypeError(
                f"spec must be a camera index, a stream URL or a video file path, not {type(spec).__name__}"
            )
        backoff = tuple(float(v) for v in reconnect_backoff)
        if not backoff or any(not math.isfinite(v) or v < 0 for v in backoff):
            raise ValueError(
                f"reconnect_backoff must be a non-empty sequence of delays >= 0, got {reconnect_backoff!r}"
            )
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError(f"max_reconnects must be None or >= 0, got {max_reconnects}")
        super().__init__(f"camera:{shown}", on_state)
        self.spec = spec
        self.queue = queue
        self.reconnect_backoff = backoff
        self.max_reconnects = max_reconnects
        self.realtime = (self.kind == "file") if realtime is None else bool(realtime)
        self.loop = loop
        self._capture_factory = capture_factory
        self._label_text = label
        self._paused = False
        self._resume_event = threading.Event()
        self._resume_event.set()
        self._reset()

    # -- public ------------------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        state = self._state
        # pause()/resume() take effect at once; the thread confirms the state shortly after.
        if self._paused and state is SourceState.STREAMING:
            return SourceState.PAUSED
        if not self._paused and state is SourceState.PAUSED:
            return SourceState.STREAMING
        return state

    @property
    def frames_captured(self) -> int:
        return self._captured

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    @property
    def fps(self) -> float:
        """Frames per second actually captured, over the last second or so (0.0 until known)."""
        times = list(self._frame_times)
        if len(times) < 2 or self.state is not SourceState.STREAMING:
            return 0.0
        span = times[-1] - times[0]
        return (len(times) - 1) / span if span > 0 else 0.0

    @property
    def reconnects(self) -> int:
        """How many times the capture was reopened after frames stopped (attempts, this run)."""
        return self._reconnects

    @property
    def source_fps(self) -> float | None:
        """The frame rate the capture reports (CAP_PROP_FPS), None if unknown."""
        return self._source_fps

    def pause(self) -> None:
        with self._lock:
            if not self.running or self._state in _TERMINAL:
                return
            self._paused = True
            self._resume_event.clear()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._resume_event.set()

    # -- thread ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._captured = 0
        self._reconnects = 0
        self._frame_times: deque[float] = deque(maxlen=31)
        self._source_fps: float | None = None
        self._paused = False
        self._capture_to_release: Any = None
        if hasattr(self, "_resume_event"):
            self._resume_event.set()

    def _wake(self) -> None:
        self._resume_event.set()

    def _label(self) -> str:
        return self._label_text

    def _open(self) -> Any | None:
        """Open the capture; None (and nothing held) if it does not open."""
        try:
            capture = self._capture_factory(self._open_arg)
        except Exception as exc:
            log.info("%s: opening failed: %s", self.source_id, exc)
            return None
        try:
            opened = capture.isOpened()
        except Exception:
            opened = False
        if not opened:
            self._release(capture)
            return None
        if self.kind == "device":
            # Keep the driver's buffer short so frames are fresh; not every backend supports it.
            setter = getattr(capture, "set", None)
            if setter is not None:
                try:
                    setter(cv2.CAP_PROP_BUFFERSIZE, 1)
                except Exception:
                    pass
        return capture

    @staticmethod
    def _release(capture: Any) -> None:
        if capture is None:
            return
        try:
            capture.release()
        except Exception as exc:
            log.debug("releasing a capture failed: %s", exc)

    def _read(self, capture: Any) -> np.ndarray | None:
        try:
            ok, image = capture.read()
        except Exception as exc:
            log.info("%s: read failed: %s", self.source_id, exc)
            return None
        if not ok or image is None or not isinstance(image, np.ndarray) or image.size == 0:
            return None
        return image

    def _frame_rate(self, capture: Any) -> float:
        getter = getattr(capture, "get", None)
        fps = 0.0
        if getter is not None:
            try:
                fps = float(getter(cv2.CAP_PROP_FPS))
            except Exception:
                fps = 0.0
        if not math.isfinite(fps) or fps <= 0 or fps > 1000:
            self._source_fps = None
            return _DEFAULT_FPS
        self._source_fps = fps
        return fps

    def _deliver(self, image: np.ndarray) -> None:
        frame = Frame(
            source=self.source_id, index=self._captured, timestamp=time.time(), path=None, image=_to_rgb(image)
        )
        self._captured += 1
        self._frame_times.append(time.monotonic())
        self.queue.put(frame)

    def _wait_while_paused(self, capture: Any) -> None:
        """Block while paused (or until stop). Live sources keep draining the device meanwhile."""
        self._set_state(SourceState.PAUSED, f"{self._label()} paused")
        grab = getattr(capture, "grab", None) if self.kind != "file" else None
        while self._paused and not self._stopping():
            if grab is None:
                self._resume_event.wait(_STOP_SLICE * 4)
                continue
            try:
                grabbed = grab()
            except Exception:
                grabbed = False
            if not grabbed:
                self._resume_event.wait(_STOP_SLICE)
        self._frame_times.clear()
        if not self._stopping():
            self._set_state(SourceState.STREAMING, f"{self._label()} resumed")

    def _run(self) -> None:
        if self.kind == "file" and not Path(self._open_arg).is_file():
            cause = "it does not exist" if not os.path.lexists(self._open_arg) else "it is not a regular file"
            self._fail(f"cannot open {self._label()}: {cause}; check the path")
            return
        capture = self._open()
        if capture is None:
            if self.kind == "file":
                self._fail(
                    f"cannot open {self._label()}: OpenCV cannot decode it; convert it to MP4 (H.264) or AVI (MJPG)"
                )
            elif self.kind == "device":
                self._fail(
                    f"cannot open {self._label()}: no such camera, or another program is using it; "
                    "check the cable and the camera index, close other camera programs and press Start"
                )
            else:
                self._fail(
                    f"cannot open {self._label()}: the stream did not answer; check the URL, the network "
                    "and the camera's credentials, then press Start"
                )
            return
        try:
            self._stream(capture)
        finally:
            self._release(self._capture_to_release)
            self._capture_to_release = None

    def _stream(self, capture: Any) -> None:
        self._capture_to_release = capture
        period = 1.0 / self._frame_rate(capture)
        next_due: float | None = None
        held: np.ndarray | None = None  # a file frame read just as pause() came
        got_any = False
        while not self._stopping():
            if self._paused:
                self._wait_while_paused(capture)
                next_due = None
                continue
            image = held if held is not None else self._read(capture)
            held = None
            if image is None:
                if self._stopping():
                    return
                if self.kind == "file":
                    if not got_any:
                        self._fail(f"{self._label()} has no readable frames; check that it is a complete video")
                        return
                    if not self.loop:
                        self._set_state(SourceState.FINISHED, f"end of {self._label()}")
                        return
                    self._release(capture)
                    capture = self._capture_to_release = self._open()
                    image = self._read(capture) if capture is not None else None
                    if image is None:
                        self._set_state(SourceState.FINISHED, f"{self._label()} could not be restarted")
                        return
                    next_due = None
                else:
                    capture, image = self._reconnect(capture)
                    if capture is None:
                        return
                    next_due = None
                    period = 1.0 / self._frame_rate(capture)
            with self._lock:
                if self._paused:
                    # Paused while reading: a file frame is kept for later, a live one is stale.
                    if self.kind == "file":
                        held = image
                    continue
            if self._state is not SourceState.STREAMING:
                self._set_state(SourceState.STREAMING, f"{self._label()} streaming")
            got_any = True
            self._deliver(image)
            if self.realtime:
                now = time.monotonic()
                next_due = (now if next_due is None else next_due) + period
                delay = next_due - time.monotonic()
                if delay > 0:
                    self._stop_event.wait(delay)
                elif delay < -period:
                    next_due = time.monotonic()  # far behind (slow disk): do not burst to catch up

    def _reconnect(self, capture: Any) -> tuple[Any | None, np.ndarray | None]:
        """Reopen a live source until it gives a frame; (capture, first frame) or (None, None)."""
        self._release(capture)
        self._capture_to_release = None
        self._frame_times.clear()
        attempt = 0
        while not self._stopping():
            if self.max_reconnects is not None and attempt >= self.max_reconnects:
                self._fail(
                    f"{self._label()} stopped sending frames and did not come back after {attempt} attempts; "
                    "check the cable/URL and press Start"
                )
                return None, None
            self.last_error = (
                f"{self._label()} stopped sending frames; reconnecting (attempt {attempt + 1}"
                + (f" of {self.max_reconnects})" if self.max_reconnects is not None else ")")
            )
            self._set_state(SourceState.RECONNECTING, self.last_error)
            delay = self.reconnect_backoff[min(attempt, len(self.reconnect_backoff) - 1)]
            if self._stop_event.wait(delay):
                return None, None
            attempt += 1
            self._reconnects += 1
            new = self._open()
            if new is None:
                continue
            image = self._read(new)
            if image is None or self._stopping():
                self._release(new)
                continue
            self._capture_to_release = new
            self.last_error = None
            log.info("%s: frames are back after %d attempt(s)", self.source_id, attempt)
            return new, image
        return None, None


# --------------------------------------------------------------------------------------------
# Folders and file lists
# --------------------------------------------------------------------------------------------


class _QuietRescans(logging.Filter):
    """Silence iadgpt.imageio's per-scan notes ("no image files found", unreadable subfolders)
    while a folder source re-scans, so polling twice a second does not flood the log; the first
    scan of a folder logs them normally."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(self.local, "rescanning", False) and record.levelno <= logging.WARNING)


_quiet_rescans = _QuietRescans()
logging.getLogger("iadgpt.imageio").addFilter(_quiet_rescans)


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    stable_since: float  # time.monotonic() when (size, mtime) were last seen to change
    initial: bool


class FolderSource(_ThreadedSource):
    """Every image in a folder (recursively, `iter_image_files` order), then new ones as they come.

    Each file is enqueued once its size and modification time have stayed the same for
    `settle_time` seconds (and it is not empty), so a file still being written or copied is not
    picked up half-written; the files found at start keep their order (one still being written
    holds back those after it). With `watch`, the folder is polled every `poll_interval` seconds
    for files not seen before; without it, the source is FINISHED once the files found at start
    are enqueued. `skip(path)` returning True leaves a file out (already inspected: resuming a
    batch). A file seen once is not enqueued again, even if rewritten. A folder that disappears
    (deleted, renamed, drive or share disconnected) makes the source FAILED with `last_error`.
    """

    _thread_prefix = "folder"

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
        super().__init__(f"folder:{self.folder}", on_state)
        self.queue = queue
        self.watch = watch
        self.poll_interval = float(poll_interval)
        self.settle_time = float(settle_time)
        self.skip = skip
        self._reset()

    @property
    def enqueued(self) -> int:
        return self._enqueued

    @property
    def skipped(self) -> int:
        """Files left out by `skip`."""
        return self._skipped

    @property
    def pending(self) -> int:
        """Files found but not yet enqueued (still being written, or waiting for room)."""
        return self._pending_count

    def _reset(self) -> None:
        self._enqueued = 0
        self._skipped = 0
        self._pending_count = 0

    def _wake(self) -> None:
        self.queue.interrupt()

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
                "share disconnected); reconnect it and press Start"
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
                now = time.monotonic()
                for path in files:
                    if path in seen:
                        continue
                    seen.add(path)
                    if self.skip is not None and self._skipped_by_consumer(path):
                        continue
                    observed = self._stat(path)
                    if observed is not None:
                        pending[path] = _Pending(observed[0], observed[1], now, first)
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
                wait = min(wait, max(self.settle_time / 2, _STOP_SLICE))
            if self._stop_event.wait(wait):
                return

    def _skipped_by_consumer(self, path: Path) -> bool:
        try:
            skipped = bool(self.skip(path))
        except Exception:
            log.exception("skip() of %s failed for %s; the file is inspected", self.source_id, path)
            return False
        if skipped:
            self._skipped += 1
        return skipped

    def _enqueue_settled(self, pending: dict[Path, _Pending]) -> bool:
        """Enqueue the pending files that have settled; False if stopped while waiting."""
        now = time.monotonic()
        ready: list[Path] = []
        blocked = False  # an unsettled file found at start holds back the ones after it
        for path, entry in list(pending.items()):
            observed = self._stat(path)
            if observed is None:
                del pending[path]  # removed or renamed before it settled
                continue
            if observed != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns = observed
                entry.stable_since = now
            settled = entry.size > 0 and now - entry.stable_since >= self.settle_time
            if not settled:
                blocked = blocked or entry.initial
                continue
            if blocked:
                continue
            ready.append(path)
        for path in ready:
            frame = Frame(source=self.source_id, index=self._enqueued, timestamp=time.time(), path=path)
            if not self.queue.put(frame, stop=self._stop_event):
                return False
            del pending[path]
            self._enqueued += 1
        return True


class FileListSource(_ThreadedSource):
    """The given files (folders expanded with `iter_image_files`), in order, then FINISHED.

    A path that does not exist makes the source FAILED before anything is enqueued (`last_error`
    names it). Files named directly are enqueued whatever their suffix, so the consumer reports a
    wrong file instead of it vanishing.
    """

    _thread_prefix = "files"

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
        super().__init__("files", on_state)
        self.paths = [Path(p) for p in paths]
        self.queue = queue
        self.skip = skip
        self._reset()

    @property
    def enqueued(self) -> int:
        return self._enqueued

    @property
    def total(self) -> int | None:
        """How many files the list expanded to (None until expanded)."""
        return self._total

    def _reset(self) -> None:
        self._enqueued = 0
        self._total: int | None = None

    def _wake(self) -> None:
        self.queue.interrupt()

    def _label(self) -> str:
        return f"{len(self.paths)} selected path(s)"

    def _run(self) -> None:
        try:
            files = iter_image_files(self.paths)
        except ImageLoadError as exc:
            self._fail(str(exc))
            return
        if self.skip is not None:
            files = [f for f in files if not self.skip(f)]
        self._total = len(files)
        self._set_state(SourceState.STREAMING, f"queueing {len(files)} file(s)")
        for path in files:
            frame = Frame(source=self.source_id, index=self._enqueued, timestamp=time.time(), path=path)
            if not self.queue.put(frame, stop=self._stop_event):
                return
            self._enqueued += 1
        self._set_state(SourceState.FINISHED, f"{len(files)} file(s) queued")
