"""Opening a folder never reads its files on the GUI thread: the scan (and its hashing) runs on the source's.

Before: `MainWindow.open_folder` counted the batch on the GUI thread, and for a reopened folder that
count hashed every file to leave out what was inspected before, so a folder of thousands of large
images froze the window (no repaint, "not responding") before anything was inspected. Now the folder
source alone lists and checks the files, the Live line counts what its scan finds ("scanning… N
found"), and Stop ends the scan between two files.

The hashing is held deterministically: `HashGate` stops `AlreadyInspected`'s sha256 of a file until
the test lets it go, so "during the scan" does not depend on how fast the machine is.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from iadgpt import imageio
from iadgpt_desktop.ui.live_view import describe_stats
from iadgpt_desktop.workers import stored as stored_module
from iadgpt_desktop.workers.frames import OrderedQueue
from iadgpt_desktop.workers.session import SessionStats
from iadgpt_desktop.workers.sources import FolderSource, ScanProgress, SourceState
from tests.app.conftest import copy_samples

HANG_GUARD_S = 20  # a hash held longer than this lets every hash go, so a failing test cannot hang the run


class HashGate:
    """Holds every hash of `AlreadyInspected` (a reopened folder's skip test) until `release` is set.

    It records the threads that hashed and how many hashes were started and finished.
    """

    def __init__(self, real) -> None:
        self._real = real
        self.entered = threading.Event()
        self.release = threading.Event()
        self.timed_out = False
        self.started = 0
        self.finished = 0
        self.threads: set[threading.Thread] = set()

    def __call__(self, path):
        self.threads.add(threading.current_thread())
        self.started += 1
        self.entered.set()
        if not self.release.wait(HANG_GUARD_S):
            self.timed_out = True
            self.release.set()
        try:
            return self._real(path)
        finally:
            self.finished += 1

    def close(self) -> None:
        """Hold the hashes that come from here on."""
        self.release.clear()
        self.entered.clear()
        self.started = self.finished = 0
        self.threads.clear()

    def release_when_stopped(self, source) -> None:
        """Let the held hash go once `source` is asked to stop (not before: the scan must not race on)."""
        def wait_for_stop() -> None:
            if source._stop_event.wait(HANG_GUARD_S):  # set by stop() before it joins the source's thread
                self.release.set()
        threading.Thread(target=wait_for_stop, name="release-on-stop", daemon=True).start()


@pytest.fixture
def gate(monkeypatch):
    held = HashGate(stored_module.sha256_file)
    held.release.set()  # open until the test closes it
    monkeypatch.setattr(stored_module, "sha256_file", held)
    yield held
    held.release.set()


def _inspected_once(w, qtbot, folder: Path) -> None:
    """The folder inspected once, so that opening it again hashes every file to skip it."""
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_folder(folder, watch=False)


# -- the whole station ----------------------------------------------------------------------------

def test_a_reopened_folder_is_hashed_off_the_gui_thread_while_the_live_line_counts_it(station, gate, qtbot,
                                                                                      tmp_path) -> None:
    w = station
    folder = tmp_path / "in"
    copy_samples(folder, "*.png", 3)
    _inspected_once(w, qtbot, folder)
    gate.close()

    w.open_folder(folder, watch=False)
    assert gate.finished == 0 and not gate.timed_out, "open_folder returned before any file was hashed"
    qtbot.waitUntil(gate.entered.is_set, timeout=10000)
    # The GUI thread goes on handling events while a file is held in its hash: the line says so.
    qtbot.waitUntil(lambda: "scanning… 0 found (0 of 3 checked)" in w.live.source_label.text(), timeout=10000)
    assert w.live.stop_button.isEnabled() and w.session.active
    assert gate.finished == 0

    with qtbot.waitSignal(w.batch_done, timeout=60000) as done, qtbot.waitSignal(w.earlier_shown, timeout=60000) \
            as shown:
        gate.release.set()
    assert not gate.timed_out and gate.finished == 3
    assert threading.main_thread() not in gate.threads, "the GUI thread hashed a file"
    assert done.args == [0, 0] and shown.args == [3, 0], "the skipped images' earlier results are shown"
    assert len(w.live.strip.outcomes()) == 3
    assert "done: 3 images already inspected in this folder, none new" in w.live.source_label.text()
    assert "Done: 3 images already inspected in this folder, none new" in w.statusBar().currentMessage()


def test_stop_during_the_scan_ends_it_at_once_and_the_station_goes_on(station, gate, qtbot, tmp_path) -> None:
    w = station
    folder = tmp_path / "in"
    copy_samples(folder, "*.png", 6)
    _inspected_once(w, qtbot, folder)
    gate.close()
    done: list[tuple[int, int]] = []
    w.batch_done.connect(lambda inspected, failed: done.append((inspected, failed)))

    w.open_folder(folder, watch=False)
    qtbot.waitUntil(gate.entered.is_set, timeout=10000)
    source = w.session.source
    gate.release_when_stopped(source)
    w.live.stop_button.click()  # the scan ends after the file in hand: none of the 5 others is hashed
    assert not source.running, "stop() waited for the scan's thread, which had ended"
    assert (gate.started, gate.finished) == (1, 1) and not gate.timed_out
    assert not w.session.active and done == [], "a stopped batch is not done"
    assert w.live.source_label.text().startswith("folder ") and "stopped after" in w.live.source_label.text()
    assert not w.live.stop_button.isEnabled()

    # The station is usable: the same folder opened again is scanned to its end.
    with qtbot.waitSignal(w.batch_done, timeout=60000) as again:
        w.open_folder(folder, watch=False)
    assert again.args == [0, 0] and gate.finished == 7
    assert "done: 6 images already inspected in this folder, none new" in w.live.source_label.text()


def test_opening_files_or_a_folder_lists_nothing_on_the_gui_thread(station, qtbot, tmp_path, monkeypatch) -> None:
    listed_on: list[threading.Thread] = []
    real = imageio._walk_image_files

    def walk(root):
        listed_on.append(threading.current_thread())
        return real(root)

    monkeypatch.setattr(imageio, "_walk_image_files", walk)
    folder = tmp_path / "in"
    copy_samples(folder, "*.png", 2)
    w = station
    with qtbot.waitSignal(w.batch_done, timeout=120000) as files:
        w.open_paths([folder])
    with qtbot.waitSignal(w.batch_done, timeout=120000) as again:
        w.open_folder(folder, watch=False)
    assert files.args == [2, 0] and again.args == [2, 0], "files opened one by one are not a folder's batch"
    assert listed_on and threading.main_thread() not in listed_on, "the GUI thread listed a folder"


# -- the folder source -----------------------------------------------------------------------------

def test_folder_scan_says_how_far_it_is_and_stops_between_two_files(tmp_path) -> None:
    """The first scan reports listed / checked / found while `skip` holds it, and a stop ends it there."""
    copy_samples(tmp_path, "*.png", 4)
    held_at = threading.Event()
    release = threading.Event()
    checked: list[str] = []

    def skip(path: Path) -> bool:
        checked.append(path.name)
        if len(checked) == 3:
            held_at.set()
            release.wait(HANG_GUARD_S)
        return len(checked) == 2  # the second file was inspected before

    source = FolderSource(tmp_path, OrderedQueue(), watch=False, settle_time=0.0, skip=skip)
    try:
        source.start()
        assert held_at.wait(10)
        assert source.state is SourceState.CONNECTING
        assert source.scan == ScanProgress(listed=4, checked=2, found=1)
        assert (source.skipped, source.pending, source.enqueued) == (1, 1, 0), "nothing queued before the scan ends"
        stopper = threading.Thread(target=source.stop)
        stopper.start()
        assert source._stop_event.wait(10)  # stop() has asked; let the held check return
        release.set()
        stopper.join(10)
        assert not source.running and source.state is SourceState.STOPPED
        assert len(checked) == 3, "no file checked after the stop"
        assert source.scan is None and source.enqueued == 0
    finally:
        release.set()
        source.stop()


# -- the line the operator reads ---------------------------------------------------------------------

def test_live_line_during_a_scan() -> None:
    folder = "folder:/plant/line4/ball_screw_drive/inspect"
    listing = describe_stats(SessionStats(folder, SourceState.CONNECTING, total=0, scan=ScanProgress(None, 0, 0)))
    assert listing == "folder …/ball_screw_drive/inspect — scanning… 0 found"
    hashing = describe_stats(SessionStats(folder, SourceState.CONNECTING, total=1200, waiting=1200, skipped=300,
                                          scan=ScanProgress(5000, 1500, 1200)))
    assert hashing == "folder …/ball_screw_drive/inspect — scanning… 1200 found, 300 already inspected " \
                      "(1500 of 5000 checked)"
    checked = describe_stats(SessionStats(folder, SourceState.CONNECTING, total=5, waiting=5,
                                          scan=ScanProgress(5, 5, 5)))
    assert checked.endswith("scanning… 5 found"), "every file checked: no count of the checks left to show"
    paused = describe_stats(SessionStats(folder, SourceState.CONNECTING, paused=True, scan=ScanProgress(9, 3, 3)))
    assert "scanning… 3 found" in paused and "PAUSED" in paused
    stopped = describe_stats(SessionStats(folder, SourceState.STOPPED, total=4, skipped=2))
    assert "stopped after 0 of 4 inspected, 2 skipped (already inspected)" in stopped
