"""A folder opened again shows its earlier results: Live holds the stored inspections of the images it skips.

Before: a reopened folder whose images were all inspected in an earlier session left Live empty (the
placeholder canvas, WAITING, an empty strip) with only the status line saying why. Now the most recent
inspection of each skipped image is read back from History, off the GUI thread, into the strip, and
the latest is on screen: its image and stored map, verdict, position, types and conversation. A
stored image that is gone, or a row that cannot be read, is named for that item; the others show.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import DB_FILENAME
from iadgpt_desktop.storage.records import InspectionFilter, InspectionRow
from iadgpt_desktop.ui.live_view import LiveView
from iadgpt_desktop.ui.main_window import MainWindow
from iadgpt_desktop.ui.recent_strip import outcome_label
from iadgpt_desktop.workers.contract import ModelState, ModelStatus
from iadgpt_desktop.workers.inference import FromHistory
from tests.app.conftest import copy_samples, start_station
from tests.app.outcomes import make_outcome


def _settings(tmp_path: Path) -> Settings:
    return Settings(preset="tiny-test", data_dir=str(tmp_path / "data"), device="cpu")


@pytest.fixture
def earlier_session(qtbot, tmp_path, monkeypatch) -> tuple[Path, list[InspectionRow]]:
    """A folder of 3 images inspected by a station that has since closed; its stored rows, oldest first."""
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))
    folder = tmp_path / "line4"
    copy_samples(folder, "*.png", 2)
    copy_samples(folder, "pitting_*.png", 1)
    w = start_station(qtbot, _settings(tmp_path))
    with qtbot.waitSignal(w.batch_done, timeout=120000) as done:
        w.open_folder(folder, watch=False)
    assert done.args == [3, 0]
    with w.db.Session.begin() as s:
        rows = repository.query_inspections(s, InspectionFilter(), order_by="created_at", descending=False)
        repository.add_message(s, rows[-1].id, "user", "Where is it?")
        repository.add_message(s, rows[-1].id, "assistant", "At the top left.")
    w.close()
    return folder, rows


def _reopen(qtbot, tmp_path: Path, folder: Path, *, wait_for_model: bool = True) -> tuple[MainWindow, list]:
    """A new station over the same history opens the folder again; (window, earlier_shown's arguments)."""
    if wait_for_model:
        w = start_station(qtbot, _settings(tmp_path))
    else:
        w = MainWindow(_settings(tmp_path), persist_settings=False)
        qtbot.addWidget(w)
        w.show()
    assert w.live.strip.outcomes() == [] and w.live.banner.text() in ("WAITING", "LOADING MODEL…")
    with qtbot.waitSignal(w.earlier_shown, timeout=60000) as shown:
        w.open_folder(folder, watch=False)
    return w, shown.args


def test_a_reopened_folder_shows_its_earlier_results(earlier_session, qtbot, tmp_path) -> None:
    folder, rows = earlier_session
    w, shown = _reopen(qtbot, tmp_path, folder)
    assert shown == [3, 0]
    live = w.live
    assert [o.inspection_id for o in live.strip.outcomes()] == [r.id for r in rows], "oldest left, as inspected"
    latest = rows[-1]
    assert live.outcome is live.strip.newest() and live.outcome.inspection_id == latest.id
    assert live.banner.text() == latest.verdict.upper()
    assert live.file_label.text() == f"#{latest.id} {latest.file_name}"
    assert live.position.text() == (latest.position or "–")
    assert live.answer.text() == latest.answer
    assert "From History: inspected" in live.history_note.text() and live.history_note.isVisible()
    assert live.view.image() is not None and live.view.image().width() == latest.width
    assert live.outcome.result.anomaly_map is not None, "the stored map is drawn over it"
    assert not live.earlier_problems.isVisible()
    # The conversation stored with it is in the chat pane, the way a Live selection always loads it.
    assert w.chat.inspection_id == latest.id and "Where is it?" in w.chat.transcript.toPlainText()
    assert outcome_label(live.outcome) in w.chat.title.text()
    # The batch itself inspected nothing: the line says so, and stepping back reads the earlier ones.
    assert "3 images already inspected in this folder, none new" in live.source_label.text()
    live.show_previous()
    assert live.outcome.inspection_id == rows[1].id and live.banner.text() == rows[1].verdict.upper()


def test_earlier_results_show_before_the_model_has_loaded(earlier_session, qtbot, tmp_path) -> None:
    folder, rows = earlier_session
    w, shown = _reopen(qtbot, tmp_path, folder, wait_for_model=False)
    assert shown == [3, 0] and w.live.outcome.inspection_id == rows[-1].id
    assert w.live.banner.text() == rows[-1].verdict.upper() and w.live.view.isEnabled()


def test_a_stored_image_that_is_gone_is_named_and_the_others_still_show(earlier_session, qtbot, tmp_path) -> None:
    folder, rows = earlier_session
    gone = rows[1]
    (tmp_path / "data" / gone.image_path).unlink()
    w, shown = _reopen(qtbot, tmp_path, folder)
    assert shown == [3, 1]
    live = w.live
    assert [o.inspection_id for o in live.strip.outcomes()] == [r.id for r in rows]
    assert live.earlier_problems.isVisible() and gone.file_name in live.earlier_problems.text()
    assert live.outcome.inspection_id == rows[-1].id and live.view.image() is not None, "the others still show"
    live.show_previous()
    assert live.outcome.inspection_id == gone.id and live.view.image() is None
    assert gone.file_name in live.history_note.text() and "gone from the data folder" in live.history_note.text()
    assert live.banner.text() == gone.verdict.upper(), "its stored verdict is still read"
    live.show_previous()
    assert live.outcome.inspection_id == rows[0].id and live.view.image() is not None


def test_a_damaged_row_is_named_and_the_others_still_show(earlier_session, qtbot, tmp_path) -> None:
    folder, rows = earlier_session
    damaged = rows[0]
    with sqlite3.connect(tmp_path / "data" / DB_FILENAME) as db:
        db.execute("UPDATE inspections SET defect_types_json = '{not json' WHERE id = ?", (damaged.id,))
    w, shown = _reopen(qtbot, tmp_path, folder)
    assert shown == [2, 1]
    assert [o.inspection_id for o in w.live.strip.outcomes()] == [r.id for r in rows[1:]]
    assert damaged.file_name in w.live.earlier_problems.text() and f"#{damaged.id}" in w.live.earlier_problems.text()
    assert w.live.outcome.inspection_id == rows[-1].id


def test_the_screenshot_run_counts_the_skipped_and_waits_for_the_earlier_results(earlier_session, tmp_path) -> None:
    """The README's run command again (in its own process: it runs and quits a whole application)."""
    folder, rows = earlier_session
    shot = tmp_path / "resume.png"
    run = subprocess.run([sys.executable, "-m", "iadgpt_desktop", "--open", str(folder), "--screenshot", str(shot),
                          "--preset", "tiny-test", "--data-dir", str(tmp_path / "data"), "--timeout", "120"],
                         capture_output=True, text=True, timeout=300,  # hang guard
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr
    assert "inspected 0 image(s), 0 failed, 3 skipped (inspected before)" in run.stdout, run.stdout
    assert shot.is_file()


# -- the Live view alone ----------------------------------------------------------------------

def _from_history(inspection_id: int, verdict: str, name: str, decision: str | None = None):
    outcome = make_outcome(inspection_id, verdict=verdict, file_name=name, seed=inspection_id)
    outcome.from_history = FromHistory(datetime(2026, 12, 1, 15, 25, tzinfo=UTC), decision)
    return outcome


def test_earlier_results_go_before_results_that_came_meanwhile(qtbot) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    view.set_model_status(ModelStatus(ModelState.LOADING, "loading"))
    before = make_outcome(1, file_name="shown_before.png")
    view.add_outcome(before)
    new = make_outcome(9, file_name="inspected_now.png")
    view.add_outcome(new)  # came while the earlier results were read
    view.show_earlier([_from_history(4, "good", "a.png"), _from_history(5, "defective", "b.png")], after=before)
    assert [o.inspection_id for o in view.strip.outcomes()] == [1, 4, 5, 9]
    assert view.outcome is new, "the newest result stays on screen"


def test_an_earlier_result_needs_no_model_and_keeps_its_decision(qtbot) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    view.set_model_status(ModelStatus(ModelState.LOADING, "loading"))
    view.show_earlier([_from_history(4, "good", "a.png", decision="confirmed")], after=None)
    assert view.banner.text() == "GOOD" and view.view.isEnabled()
    assert view.confirm_button.isEnabled(), "a stored result is decided on as it is stored"
    assert "Recorded for #4 a.png: Confirm" in view.decision_label.text()
    assert view.reference_name.text() == "– (none recorded with this inspection)"
    view.show_earlier([_from_history(4, "good", "a.png")], after=None)
    assert len(view.strip.outcomes()) == 1, "one already in the strip is not added twice"
