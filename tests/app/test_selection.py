"""Issue 12, problems 2 and 6: what the operator reads is what chat and decisions act on; fast hands.

Before: chat, Confirm/Override and the detail followed the newest result; a new result cleared
"Recorded"; Live could not step back; only Ctrl+O and Ctrl+Q existed; "Override: defective" was
offered on a defective result.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from iadgpt_desktop.storage import repository
from iadgpt_desktop.ui.live_view import LiveView
from iadgpt_desktop.workers.contract import ModelState, ModelStatus
from tests.app.conftest import copy_samples
from tests.app.outcomes import make_outcome

READY = ModelStatus(ModelState.READY, "ready", "tiny-test@untrained", "few-shot")


def _live(qtbot) -> LiveView:
    view = LiveView()
    qtbot.addWidget(view)
    view.set_model_status(READY)
    return view


def test_a_new_result_does_not_replace_the_part_being_read(qtbot) -> None:
    view = _live(qtbot)
    first, second, third = (make_outcome(i, file_name=f"p{i}.png", seed=i) for i in (39, 40, 41))
    view.add_outcome(first)
    view.add_outcome(second)
    assert view.outcome is second  # following live
    view.show_previous()
    assert view.outcome is first and not view.follow.isChecked()
    decisions = []
    view.decision.connect(lambda i, d: decisions.append((i, d)))
    view.confirm_button.click()
    view.add_outcome(third)  # a new part arrives while #39 is read
    assert view.outcome is first, "the screen stays on the part being read"
    assert "#39" in view.file_label.text() and "1 newer" in view.newer_label.text()
    assert "Recorded" in view.decision_label.text(), "a new result does not clear the recorded decision"
    assert decisions == [(39, "confirmed")]
    view.show_next()
    view.show_next()
    assert view.outcome is third and view.follow.isChecked(), "stepping to the newest follows live again"
    assert view.decision_label.text() == ""


def test_strip_click_selects_and_emits_what_is_read(qtbot) -> None:
    view = _live(qtbot)
    outcomes = [make_outcome(i, seed=i) for i in range(1, 5)]
    for o in outcomes:
        view.add_outcome(o)
    assert view.strip.count() == 4
    picked = []
    view.selection_changed.connect(picked.append)
    view.strip.itemClicked.emit(view.strip.item(1))
    assert view.outcome is outcomes[1] and picked == [outcomes[1]] and not view.follow.isChecked()
    view.follow.setChecked(True)
    assert view.outcome is outcomes[-1]


def test_only_the_opposite_override_is_offered(qtbot) -> None:
    view = _live(qtbot)
    decisions = []
    view.decision.connect(lambda i, d: decisions.append(d))
    view.add_outcome(make_outcome(1, verdict="defective"))
    assert view.override_button.text() == "Override: good"
    assert view.confirm_button.text() == "Confirm: defective"
    view.override()
    view.add_outcome(make_outcome(2, verdict="good"))
    assert view.override_button.text() == "Override: defective"
    view.override()
    assert decisions == ["overridden_good", "overridden_defective"]


def test_chat_follows_the_part_being_read_and_the_history_pick(station, qtbot, tmp_path) -> None:
    w = station
    copy_samples(tmp_path / "in", "pitting_*.png", 3)
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_folder(tmp_path / "in", watch=False)
    newest = w.live.outcome
    assert w.chat.inspection_id == newest.inspection_id
    w.live.show_previous()
    earlier = w.live.outcome
    assert earlier is not newest and w.chat.inspection_id == earlier.inspection_id
    assert earlier.file_name in w.chat.title.text()
    # Typing a question stops following, so the next result cannot steal it.
    w.live.set_following(True)
    qtbot.keyClicks(w.chat.input, "where")
    assert not w.live.follow.isChecked()
    # A History pick is what the chat asks about while History is in front; Live's again on return.
    w.tabs.setCurrentWidget(w.history)
    qtbot.waitUntil(lambda: w.history.model.rowCount() == 3, timeout=5000)
    oldest_id = min(o.inspection_id for o in w.live.strip.outcomes())
    assert w.history.select_inspection(oldest_id)
    assert w.chat.inspection_id == oldest_id
    w.tabs.setCurrentWidget(w.live)
    assert w.chat.inspection_id == w.live.outcome.inspection_id


def test_confirm_shortcut_records_the_shown_part(station, qtbot, tmp_path) -> None:
    w = station
    copy_samples(tmp_path / "in", "good_*.png", 2)
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_folder(tmp_path / "in", watch=False)
    w.live.show_previous()
    shown = w.live.outcome
    confirm = next(a for a in w.shortcut_actions if a.shortcut() == QKeySequence("F2"))
    confirm.trigger()
    with w.db.Session() as s:
        decided = {r.id: r.operator_decision for r in repository.query_inspections(s, repository.InspectionFilter())}
    assert decided[shown.inspection_id] == "confirmed"
    assert sum(1 for d in decided.values() if d) == 1


def test_shortcuts_cover_the_operator_actions_and_are_listed(station) -> None:
    w = station
    listed = dict(w.shortcuts())
    for action, key in (("Pause / resume", "F5"), ("Confirm the verdict", "F2"), ("Override the verdict", "F3"),
                        ("Previous result", "Alt+Left"), ("Next result", "Alt+Right"), ("Search history", "Ctrl+F"),
                        ("Fit image", "Ctrl+0"), ("Zoom in", "Ctrl+="), ("Follow live", "Ctrl+L")):
        assert listed.get(action) == QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText), action
    assert "F2" in w.live.confirm_button.toolTip() and "F5" in w.live.pause_button.toolTip()
    w.show_shortcuts()
    text = w._shortcuts_box.text()
    assert "Confirm the verdict" in text and "Alt+Left" in text
    assert w._shortcuts_box.textFormat() == Qt.TextFormat.PlainText
