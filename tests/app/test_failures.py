"""Images that could not be inspected stay in view with their reasons, and never look like the part before.

Before: a 0-byte file held a folder batch back for good (its source never handed it on) while the
Live line blamed a missing model; a failure's reason was shown only in the status bar, where the
batch's "Done" replaced it at once, and Live kept the previous part's verdict on screen, so a text
file named text.png read as if it had passed.
"""

from __future__ import annotations

import shutil

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QScreen

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.ui.live_view import LiveView
from iadgpt_desktop.ui.main_window import DEFAULT_SIZE, FRAME_ALLOWANCE, MainWindow, fitted_size, sample_dir
from iadgpt_desktop.workers.contract import InspectionFailure, ModelState, ModelStatus
from iadgpt_desktop.workers.frames import SourceState
from iadgpt_desktop.workers.session import SessionStats
from tests.app.outcomes import make_outcome

EMPTY_REASON = "the file is empty (0 bytes); re-export or re-capture it"  # the CLI's sentence


def _good_sample(folder, name: str):
    folder.mkdir(parents=True, exist_ok=True)
    first = sorted((sample_dir() / "inspect").glob("*.png"))[0]
    return shutil.copy(first, folder / name)


def test_empty_file_fails_with_its_reason_and_the_folder_batch_goes_on(station, qtbot, tmp_path) -> None:
    w = station
    folder = tmp_path / "zero"
    folder.mkdir()
    (folder / "a_empty.png").write_bytes(b"")
    _good_sample(folder, "b_good.png")
    with qtbot.waitSignal(w.batch_done, timeout=120000) as done:
        w.open_folder(folder, watch=False)
    assert done.args == [1, 1]  # the good image after the empty one is inspected
    [failure] = w.live.failures()
    assert failure.name == "a_empty.png" and failure.message.endswith(EMPTY_REASON)
    assert w.live.failure_list.isVisible() and EMPTY_REASON in w.live.failure_list.item(0).text()
    assert [o.file_name for o in w.live.strip.outcomes()] == ["b_good.png"]
    # On screen, the newest of the two (the empty file waits longer to settle, so usually it): each as itself.
    if w.live.failure is not None:
        assert w.live.failure is failure and w.live.banner.text() == "NOT INSPECTED"
    else:
        assert w.live.outcome.file_name == "b_good.png"
    line = w.live.source_label.text()
    assert "done: 1 of 2 inspected, 1 could not be read" in line and "no model" not in line
    assert w.live.failures_button.isVisible()


def test_a_failure_after_a_part_takes_its_place_on_screen(station, qtbot, tmp_path) -> None:
    w = station
    good = _good_sample(tmp_path / "in", "good.png")
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_paths([good])
    assert w.live.banner.text() in ("GOOD", "DEFECTIVE")
    text = tmp_path / "in" / "text.png"
    text.write_text("this is not a picture")
    with qtbot.waitSignal(w.batch_done, timeout=120000) as done:
        w.open_paths([text])
    assert done.args == [0, 1]
    live = w.live
    assert live.banner.text() == "NOT INSPECTED"
    assert live.file_label.text() == "text.png" and live.outcome is None
    assert not live.confirm_button.isEnabled() and not live.override_button.isEnabled()
    assert live.view.image() is None and "Could not inspect text.png" in live.view._placeholder
    [failure] = live.failures()
    assert failure.path == str(text) and live.failure_list.isVisible()
    assert "0 of 1 inspected, 1 could not be read" in live.source_label.text()
    assert "listed in Live" in w.statusBar().currentMessage()
    live.show_previous()  # back to the part before: its own verdict again
    assert live.outcome is not None and live.outcome.file_name == "good.png" and live.failure is None
    assert live.banner.text() in ("GOOD", "DEFECTIVE") and not live.follow.isChecked()
    live.set_following(True)  # following live again: the newest thing that happened, the failure
    assert live.failure is failure and live.banner.text() == "NOT INSPECTED"


def test_the_strip_marks_a_failed_image_in_its_place_and_a_click_shows_it(station, qtbot, tmp_path) -> None:
    """The filmstrip of recent parts skipped the images that failed, so a gap in the line went unseen."""
    w = station
    live = w.live
    first = _good_sample(tmp_path / "in", "a_good.png")
    broken = tmp_path / "in" / "b_text.png"
    broken.write_text("this is not a picture")
    last = _good_sample(tmp_path / "in", "c_good.png")
    for path in (first, broken, last):
        with qtbot.waitSignal(w.batch_done, timeout=120000):
            w.open_paths([path])
    strip = live.strip
    texts = [strip.item(i).text() for i in range(strip.count())]
    assert len(texts) == 3 and texts[1].startswith("⚠") and not texts[0].startswith("⚠")
    assert "b_text.png" in strip.item(1).toolTip() and "not inspected" in strip.item(1).toolTip()
    assert [o.file_name for o in strip.outcomes()] == ["a_good.png", "c_good.png"]
    live.show_previous()  # previous/next step over the failure, from result to result
    assert live.outcome is not None and live.outcome.file_name == "a_good.png"
    strip.itemClicked.emit(strip.item(1))
    assert live.failure is strip.failures()[0] and live.banner.text() == "NOT INSPECTED"
    assert strip.currentRow() == 1


def _ready(view: LiveView) -> None:
    view.set_model_status(ModelStatus(ModelState.READY, "tiny-test ready"))


def test_failure_while_reading_an_earlier_part_waits_for_follow_live(qtbot) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    _ready(view)
    view.add_outcome(make_outcome(1, verdict="good", file_name="one.png"))
    view.set_following(False)
    failure = InspectionFailure("two.png", f"cannot read image /line/two.png: {EMPTY_REASON}", "/line/two.png")
    view.add_failure(failure)
    assert view.outcome is not None and view.outcome.file_name == "one.png"  # the operator's part stays
    assert view.newer_label.text() == "1 newer"
    assert view.failure_list.item(0).text() == f"✗ two.png — {EMPTY_REASON}"
    assert view.next_button.isEnabled()
    view.show_next()  # the newest event is the failure
    assert view.failure is failure and view.follow.isChecked() and view.banner.text() == "NOT INSPECTED"
    view.add_outcome(make_outcome(2, verdict="good", file_name="three.png"))
    assert view.outcome.file_name == "three.png" and view.failure is None and view.banner.text() == "GOOD"
    view.failure_list.itemClicked.emit(view.failure_list.item(0))  # picked from the list: read again
    assert view.failure is failure and not view.follow.isChecked()
    view.clear_failures()  # a new source
    assert view.failures() == [] and not view.failures_button.isVisibleTo(view)


def test_no_model_line_follows_the_model_state(qtbot) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    stats = SessionStats(source="folder:/qa/zero", state=SourceState.STREAMING, waiting=2, total=2)
    view.show_stats(stats)  # the batch came before the model had loaded
    assert "no model is loaded" in view.source_label.text()
    _ready(view)  # the model loads; no new stats come
    assert "no model" not in view.source_label.text() and "2 waiting" in view.source_label.text()


def test_default_size_fits_the_free_area_of_the_screen() -> None:
    small = QRect(0, 0, 1366, 768 - 30)  # a 1366x768 laptop with a 30 px panel
    size = fitted_size(small, QSize(900, 600))
    assert size.width() + FRAME_ALLOWANCE.width() <= 1366 and size.height() + FRAME_ALLOWANCE.height() <= 738
    assert fitted_size(QRect(0, 0, 1920, 1040), QSize(900, 600)) == DEFAULT_SIZE
    assert fitted_size(QRect(0, 0, 800, 500), QSize(900, 600)) == QSize(900, 600)  # never below the minimum
    assert fitted_size(None, QSize(900, 600)) == DEFAULT_SIZE


def test_window_opens_inside_a_1366x768_screen(qtbot, tmp_path, monkeypatch) -> None:
    free = QRect(0, 30, 1366, 738)
    monkeypatch.setattr(QScreen, "availableGeometry", lambda _screen: QRect(free))
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))
    w = MainWindow(Settings(preset="tiny-test", data_dir=str(tmp_path / "data"), device="cpu"),
                   persist_settings=False)
    qtbot.addWidget(w)
    try:
        minimum = w.minimumSizeHint()
        assert minimum.height() + FRAME_ALLOWANCE.height() <= free.height()
        assert w.height() + FRAME_ALLOWANCE.height() <= free.height() and w.width() <= free.width()
        assert w.height() >= minimum.height() and w.width() >= minimum.width()
        assert free.contains(QRect(w.pos(), w.size()))
    finally:
        w.close()
