"""The worker waits for frames and for storage retries on Qt events, not on a polling timer (issue 12).

A started worker (its own thread, as in the app) inspects each frame its queue announces, in order;
while no frame waits and nothing needs storing it runs no timer at all. A result that could not be
stored is stored by a single-shot timer set to its back-off, without anyone asking.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QObject, QTimer, Signal

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.errors import StorageError
from iadgpt_desktop.storage.records import InspectionFilter
from iadgpt_desktop.workers.inference import start_worker, stop_worker
from iadgpt_desktop.workers.sources import Frame, OrderedQueue


class _Requests(QObject):
    """What the session sends the worker (queued onto its thread)."""

    attach = Signal(object, str)
    detach = Signal()


@pytest.fixture
def started(tmp_path, qtbot):
    thread, worker = start_worker(Settings(preset="tiny-test", device="cpu", data_dir=str(tmp_path / "data"),
                                           generate_answers=False))
    qtbot.waitUntil(lambda: worker.inspector is not None, timeout=60000)
    requests = _Requests()
    requests.attach.connect(worker.attach_queue)
    requests.detach.connect(worker.detach_queue)
    yield worker, requests
    stop_worker(thread, worker)


def _frame(i: int) -> Frame:
    image = (np.random.default_rng(i).random((48, 64, 3)) * 255).astype(np.uint8)
    return Frame(source="camera:test", index=i, timestamp=time.time(), image=image)


def _running_timers(worker) -> list[QTimer]:
    return [t for t in worker.findChildren(QTimer) if t.isActive()]


def test_frames_are_inspected_as_they_come_and_no_timer_runs_in_between(started, qtbot) -> None:
    worker, requests = started
    queue = OrderedQueue()
    results = []
    worker.result.connect(lambda outcome: results.append(outcome.index))
    requests.attach.emit(queue, "camera:test")
    qtbot.waitUntil(lambda: worker._queue is queue, timeout=5000)
    assert _running_timers(worker) == []  # idle: nothing polls
    for i in range(3):
        queue.put(_frame(i))  # from this thread, as a source's thread puts
    qtbot.waitUntil(lambda: len(results) == 3, timeout=60000)
    assert results == [0, 1, 2] and len(queue) == 0
    assert _running_timers(worker) == []

    requests.detach.emit()  # paused: frames wait in the queue
    qtbot.waitUntil(lambda: worker._queue is None, timeout=5000)
    queue.put(_frame(3))
    requests.attach.emit(queue, "camera:test")  # resumed: what waited is inspected without a new put
    qtbot.waitUntil(lambda: len(results) == 4, timeout=60000)
    assert results[-1] == 3


def test_a_result_not_stored_is_stored_by_the_back_off_timer(started, qtbot, monkeypatch) -> None:
    worker, requests = started
    real = repository.add_batch_inspection
    left = {"failures": 1}

    def locked_once(s, record):
        if left["failures"]:
            left["failures"] -= 1
            raise StorageError("the history database is locked: another program kept it busy", transient=True)
        return real(s, record)

    monkeypatch.setattr(repository, "add_batch_inspection", locked_once)
    queue = OrderedQueue()
    shown, later = [], []
    worker.result.connect(shown.append)
    worker.saved_later.connect(later.append)
    requests.attach.emit(queue, "camera:test")
    queue.put(_frame(0))
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=60000)
    assert shown[0].inspection_id is None and shown[0].not_saved
    qtbot.waitUntil(lambda: len(later) == 1, timeout=20000)  # nobody asked: the single-shot timer did
    assert later[0] is shown[0] and later[0].inspection_id is not None
    with worker.db.Session() as s:
        assert repository.count_inspections(s, InspectionFilter()) == 1
    qtbot.waitUntil(lambda: _running_timers(worker) == [], timeout=5000)  # nothing waits: no timer left
