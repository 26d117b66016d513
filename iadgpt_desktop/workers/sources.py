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

The code lives in `frames` (frames, queues, `SourceState`), `source_base` (the thread plumbing),
`camera` (`CameraSource`) and `folder` (`FolderSource`, `FileListSource`); this module gathers the
public names so that callers import them from one place.
"""

from __future__ import annotations

from iadgpt_desktop.workers.camera import CameraSource
from iadgpt_desktop.workers.folder import FileListSource, FolderSource, ScanProgress
from iadgpt_desktop.workers.frames import Frame, NewestFrameQueue, OrderedQueue, SourceState

__all__ = [
    "CameraSource",
    "FileListSource",
    "FolderSource",
    "Frame",
    "NewestFrameQueue",
    "OrderedQueue",
    "ScanProgress",
    "SourceState",
]
