"""Frames and the queues that carry them from a source's thread to the inference worker.

* Cameras, streams and video files feed a `NewestFrameQueue`: the worker always gets the newest
  frame, older ones are dropped and counted, so a slow model never makes the picture lag.
* Folders and file lists feed an `OrderedQueue`: every file, in order, none dropped; the queue is
  bounded and `put` blocks, so a slow worker throttles the folder scan instead of the scan piling
  every path up in memory.

Both announce each frame they take to a listener (`set_listener`), called on the putting thread after
the frame is in: the inference worker turns that into a queued Qt signal and so waits for frames
without polling.

`SourceState` is what every source reports; the sources themselves live in `camera` and `folder`
(`iadgpt_desktop.workers.sources` gathers the public names).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

__all__ = [
    "Frame",
    "NewestFrameQueue",
    "OrderedQueue",
    "SourceState",
    "StopCondition",
]

STOP_SLICE = 0.05  # seconds: how often blocking waits re-check their stop condition


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


Listener = Callable[[], object]


class _Announcing:
    """The listener part shared by both queues."""

    _listener: Listener | None = None

    def set_listener(self, listener: Listener | None) -> None:
        """Call `listener()` after every frame put from now on (None: stop); it runs on the putting
        thread and must not block."""
        self._listener = listener

    def _announce(self) -> None:
        listener = self._listener
        if listener is not None:
            listener()


class NewestFrameQueue(_Announcing):
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
        self._announce()

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


class OrderedQueue(_Announcing):
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
                wait = STOP_SLICE
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
        self._announce()
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
# Source states
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
