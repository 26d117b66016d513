"""A folder opened again: its images inspected before are skipped, and the Live line says so.

Before: a folder whose images had all been inspected was reported done at once (a batch of 0), before
its source had finished reading it, so the screenshot and the status line caught it mid-scan and said
"done: nothing inspected yet" with no reason; the skipped images were counted nowhere.

The scan is held deterministically: `ScanGate` stops the folder source inside its listing of the
folder until the test lets it go, so "mid-scan" does not depend on how fast the machine is.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QObject, Slot

from iadgpt_desktop.ui.live_view import describe_stats
from iadgpt_desktop.ui.main_window import sample_dir
from iadgpt_desktop.workers import folder as folder_module
from iadgpt_desktop.workers.session import InspectionSession, SessionStats
from iadgpt_desktop.workers.sources import SourceState
from tests.app.conftest import copy_samples

HANG_GUARD_S = 60  # a scan held longer than this lets itself go, so a failing test cannot hang the run


class ScanGate:
    """Holds every folder scan (the source thread's `iter_image_files`) until `release` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self._real = folder_module.iter_image_files

    def __call__(self, paths):
        self.entered.set()
        self.release.wait(HANG_GUARD_S)
        return self._real(paths)


@pytest.fixture
def gate(monkeypatch):
    """The folder source's listing is held (nothing else lists the folder: the window does not count it)."""
    held = ScanGate()
    monkeypatch.setattr(folder_module, "iter_image_files", held)
    yield held
    held.release.set()


class WorkerStandIn(QObject):
    """What the session needs of the inference worker; the test takes the frames and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.queue = None

    @Slot(object, str)
    def attach_queue(self, queue, _name: str) -> None:
        self.queue = queue

    @Slot()
    def detach_queue(self) -> None:
        self.queue = None

    def cancel(self) -> None:
        pass


@pytest.fixture
def session(qtbot):
    s = InspectionSession(WorkerStandIn())
    yield s
    s.stop()


def _settle_events() -> None:
    """Deliver what is already posted (zero timers, queued state changes); no waiting on the clock."""
    QCoreApplication.sendPostedEvents()
    QCoreApplication.processEvents()


def _images(folder: Path, n: int) -> list[Path]:
    return copy_samples(folder, "*.png", n)


# -- the session ------------------------------------------------------------------------------

def test_all_skipped_batch_is_complete_only_after_the_scan_and_counts_the_skipped(session, gate, qtbot,
                                                                                   tmp_path) -> None:
    _images(tmp_path / "in", 3)
    finished: list[SessionStats] = []
    session.finished.connect(finished.append)
    session.open_folder(tmp_path / "in", watch=False, skip=lambda _p: True)
    qtbot.waitUntil(gate.entered.is_set, timeout=10000)
    _settle_events()
    assert finished == [] and session.active, "a batch is not complete while its folder is being read"
    with qtbot.waitSignal(session.finished, timeout=10000) as done:
        gate.release.set()
    stats = done.args[0]
    assert (stats.state, stats.skipped, stats.total, stats.done) == (SourceState.FINISHED, 3, 0, 0)
    _settle_events()
    assert len(finished) == 1


def test_batch_is_complete_when_the_scan_ended_and_every_queued_file_is_done(session, qtbot, tmp_path) -> None:
    files = _images(tmp_path / "in", 3)
    finished: list[SessionStats] = []
    session.finished.connect(finished.append)
    session.open_folder(tmp_path / "in", watch=False, skip=lambda p: p.name == files[0].name)
    qtbot.waitUntil(lambda: session.source.state is SourceState.FINISHED, timeout=10000)
    for _ in range(2):
        _settle_events()
        assert finished == [], "the scan ended, but a queued file is not inspected yet"
        assert session.worker.queue.get(timeout=5) is not None
        session.count(failed=False)
    assert len(finished) == 1
    assert (finished[0].inspected, finished[0].skipped, finished[0].total) == (2, 1, 2)


def test_batch_size_is_what_the_scan_found(session, qtbot, tmp_path) -> None:
    """Nothing counts the folder before its source scans it (the window does not): the batch is what it found."""
    files = _images(tmp_path / "in", 2)
    session.open_folder(tmp_path / "in", watch=False)
    qtbot.waitUntil(lambda: session.source.state is SourceState.FINISHED, timeout=10000)
    with qtbot.waitSignal(session.finished, timeout=10000) as done:
        for _ in files:
            assert session.worker.queue.get(timeout=5) is not None
            session.count(failed=False)
    assert (done.args[0].inspected, done.args[0].total) == (2, 2)


# -- the line the operator reads --------------------------------------------------------------

def test_status_line_names_the_skipped_images_and_the_way_to_inspect_them_again() -> None:
    folder = "folder:/plant/line4/ball_screw_drive/inspect"
    none_new = describe_stats(SessionStats(folder, SourceState.FINISHED, total=0, skipped=12))
    assert "done: 12 images already inspected in this folder, none new" in none_new
    assert "Open files" in none_new, "the way to inspect them again"
    mix = describe_stats(SessionStats(folder, SourceState.FINISHED, inspected=3, total=3, skipped=9))
    assert "done: 3 of 3 inspected, 9 skipped (already inspected)" in mix
    one = describe_stats(SessionStats(folder, SourceState.FINISHED, total=0, skipped=1))
    assert "1 image already inspected in this folder" in one
    watched = describe_stats(SessionStats(folder, SourceState.STREAMING, total=0, skipped=12, watching=True))
    assert "12 images already inspected in this folder, none new" in watched and "watching" in watched
    empty = describe_stats(SessionStats(folder, SourceState.FINISHED, total=0))
    assert "done: no images found" in empty
    fresh = describe_stats(SessionStats(folder, SourceState.FINISHED, inspected=4, total=4))
    assert "done: 4 of 4 inspected" in fresh and "skipped" not in fresh


# -- the whole station --------------------------------------------------------------------------

def test_a_folder_opened_again_is_done_after_its_scan_and_says_its_images_were_inspected(station, gate, qtbot,
                                                                                         tmp_path) -> None:
    w = station
    folder = tmp_path / "in"
    _images(folder, 3)
    gate.release.set()
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_folder(folder, watch=False)
    gate.entered.clear()
    gate.release.clear()

    done: list[tuple[int, int]] = []
    w.batch_done.connect(lambda inspected, failed: done.append((inspected, failed)))
    w.open_folder(folder, watch=False)
    qtbot.waitUntil(gate.entered.is_set, timeout=10000)
    _settle_events()
    assert done == [] and w.session.active, "not done while the folder is still being read"
    assert "done" not in w.live.source_label.text()
    with qtbot.waitSignal(w.session.finished, timeout=10000) as finished:
        gate.release.set()
    _settle_events()
    assert done == [(0, 0)], "done once, after the scan"
    assert finished.args[0].skipped == 3
    line = w.live.source_label.text()
    assert "done: 3 images already inspected in this folder, none new" in line, line
    assert "Done: 3 images already inspected in this folder, none new" in w.statusBar().currentMessage()
    assert "Open files" in w.live.source_label.toolTip()

    new = sorted((sample_dir() / "inspect").glob("*.png"))[3]  # one the folder does not hold yet
    shutil.copy(new, folder / new.name)
    with qtbot.waitSignal(w.batch_done, timeout=120000) as again:
        w.open_folder(folder, watch=False)
    assert again.args == [1, 0]
    assert "done: 1 of 1 inspected, 3 skipped (already inspected)" in w.live.source_label.text()
