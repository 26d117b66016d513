"""Frames from cameras, stream URLs and video files, captured on their own thread.

They feed a `NewestFrameQueue`: the worker always gets the newest frame, older ones are dropped and
counted, so a slow model never makes the picture lag.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from iadgpt.imageio import load_image
from iadgpt_desktop.workers.frames import STOP_SLICE, Frame, NewestFrameQueue, SourceState
from iadgpt_desktop.workers.source_base import TERMINAL_STATES, StateCallback, ThreadedSource

log = logging.getLogger(__name__)

__all__ = ["CameraSource"]

_DEFAULT_FPS = 30.0


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


class CameraSource(ThreadedSource):
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
    _open_again = "open it again with Camera…"

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
            if not self.running or self._state in TERMINAL_STATES:
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
                self._resume_event.wait(STOP_SLICE * 4)
                continue
            try:
                grabbed = grab()
            except Exception:
                grabbed = False
            if not grabbed:
                self._resume_event.wait(STOP_SLICE)
        self._frame_times.clear()
        if not self._stopping():
            self._set_state(SourceState.STREAMING, f"{self._label()} resumed")

    def _run(self) -> None:
        if self.kind == "file" and not Path(self._open_arg).is_file():
            cause = "it does not exist" if not os.path.lexists(self._open_arg) else "it is not a regular file"
            self._fail(f"cannot open {self._label()}: {cause}; check the path")
            return
        if self.kind == "file" and Path(self._open_arg).stat().st_size == 0:
            self._fail(f"cannot open {self._label()}: the file is empty (0 bytes); the recording was cut off or "
                       f"not copied, so record or copy it again")
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
                    f"check the cable and the camera index, close other camera programs and {self._open_again}"
                )
            else:
                self._fail(
                    f"cannot open {self._label()}: the stream did not answer; check the URL, the network "
                    f"and the camera's credentials, then {self._open_again}"
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
                    f"check the cable/URL and {self._open_again}"
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
