"""Issue 12, problems 3, 4 and 5: the file name, the "no model" state and honest progress.

Before: the file name was stored nowhere; with no model a new image waited silently while Live kept
the last DEFECTIVE verdict with Confirm enabled, and a broken setting had already replaced the
working model and been saved; Pause stored an empty answer; Stop and the end of a batch said
nothing, there was no "x of N", and Pause did not show its state.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.records import InspectionFilter
from iadgpt_desktop.ui.live_view import LiveView
from iadgpt_desktop.ui.main_window import MainWindow
from iadgpt_desktop.workers.contract import ModelState, ModelStatus
from iadgpt_desktop.workers.inference import INTERRUPTED, InferenceWorker
from iadgpt_desktop.workers.sources import Frame
from tests.app.conftest import copy_samples, emitted, wait_for_model
from tests.app.outcomes import make_outcome


def _rows(w) -> list:
    with w.db.Session() as s:
        return repository.query_inspections(s, InspectionFilter(), limit=100)


def test_file_names_are_shown_stored_and_searchable(station, qtbot, tmp_path) -> None:
    w = station
    copy_samples(tmp_path / "in", "pitting_08*.png")
    copy_samples(tmp_path / "in", "good_000.png")
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_folder(tmp_path / "in", watch=False)
    assert w.live.outcome.file_name in w.live.file_label.text()
    assert sorted(r.file_name for r in _rows(w)) == ["good_000.png", "pitting_080.png"]
    w.tabs.setCurrentWidget(w.history)
    w.history.search.setText("pitting_080")
    w.history.refresh()
    qtbot.waitUntil(lambda: w.history.model.rowCount() == 1, timeout=5000)
    assert w.history.model.index(0, 1).data() == "pitting_080.png"
    w.history.select_inspection(w.history.model.row_at(0).id)
    assert w.history.detail.fields["File"].text() == "pitting_080.png"


def test_batch_reports_x_of_n_then_done(station, qtbot, tmp_path) -> None:
    w = station
    copy_samples(tmp_path / "in", "*.png", 4)
    texts = []
    w.session.stats.connect(lambda _s: texts.append(w.live.source_label.text()))
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_paths([tmp_path / "in"])
    assert any("1 of 4 inspected" in t for t in texts) and any("3 of 4 inspected" in t for t in texts)
    assert "done: 4 of 4 inspected" in w.live.source_label.text()
    assert "Done: 4 of 4 inspected" in w.statusBar().currentMessage()
    assert not w.live.stop_button.isEnabled() and not w.live.pause_button.isEnabled()


def test_pause_and_stop_show_their_state(station, qtbot, tmp_path) -> None:
    w = station
    copy_samples(tmp_path / "in", "good_000.png")
    w.open_folder(tmp_path / "in", watch=True)
    qtbot.waitUntil(lambda: "watching for new images" in w.live.source_label.text(), timeout=60000)
    w.live.pause_button.click()
    assert w.live.pause_button.text() == "Resume" and "PAUSED" in w.live.source_label.text()
    w.live.pause_button.click()
    assert w.live.pause_button.text() == "Pause" and "PAUSED" not in w.live.source_label.text()
    w.live.stop_button.click()
    assert "stopped after 1 of 1 inspected" in w.live.source_label.text()
    assert not w.live.stop_button.isEnabled()


def test_no_model_greys_the_last_result_and_counts_waiting_images(qtbot) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    view.set_model_status(ModelStatus(ModelState.READY, "ready", "m", "few-shot"))
    view.add_outcome(make_outcome(7, verdict="defective"))
    assert view.confirm_button.isEnabled() and view.banner.text() == "DEFECTIVE"
    view.set_model_status(ModelStatus(ModelState.FAILED, "weights for preset 'x' not found"))
    assert view.banner.text() == "NO MODEL" and not view.confirm_button.isEnabled()
    assert not view.override_button.isEnabled() and not view.view.isEnabled()
    from iadgpt_desktop.workers.session import SessionStats
    from iadgpt_desktop.workers.sources import SourceState

    view.show_stats(SessionStats("folder:/line", SourceState.STREAMING, waiting=3, watching=True))
    assert "3 image(s) waiting: no model is loaded" in view.source_label.text()


def test_a_broken_model_setting_keeps_the_working_model_and_is_not_saved(qtbot, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))
    good = Settings(preset="tiny-test", data_dir=str(tmp_path / "data"), device="cpu")
    w = MainWindow(good, persist_settings=True)
    qtbot.addWidget(w)
    wait_for_model(qtbot, w)
    broken = tmp_path / "weights"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json", encoding="utf-8")
    try:
        rejected = emitted(qtbot, w.worker.settings_rejected,
                           lambda: w.apply_settings(dataclasses.replace(good, weights_dir=str(broken))))
        assert rejected[0] == good
        kept = dataclasses.replace(w.settings, last_product_id=good.last_product_id)  # the sample product was used
        assert kept == good and w.model_status.state is ModelState.READY
        saved = tmp_path / "config" / "settings.json"
        assert not saved.exists() or json.loads(saved.read_text())["weights_dir"] == ""
        copy_samples(tmp_path / "in", "good_000.png")
        with qtbot.waitSignal(w.batch_done, timeout=60000) as done:
            w.open_folder(tmp_path / "in", watch=False)
        assert done.args == [1, 0], "the old model still inspects"
    finally:
        w.close()


def test_a_paused_answer_is_stored_as_interrupted(tmp_path, qtbot) -> None:
    w = InferenceWorker(Settings(preset="tiny-test", device="cpu", data_dir=str(tmp_path / "data"),
                                 generate_answers=True))
    w._open_storage()
    w._load_model()
    real = w.inspector.inspect

    def paused_midway(*args, **kwargs):
        result = real(*args, **kwargs)
        w.cancel()  # Pause pressed while the answer was generated
        result.answer = result.answer[:5]
        return result

    w.inspector.inspect = paused_midway
    try:
        image = (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8)
        outcome = w.inspect_frame(Frame(source="camera:0", index=0, timestamp=time.time(), image=image))
        assert outcome.interrupted and INTERRUPTED in outcome.result.answer
        with w.db.Session() as s:
            row = repository.get_inspection(s, outcome.inspection_id)
        assert INTERRUPTED in row.answer and row.answer.strip() != ""
        # A chat answer stopped by the operator is stored as interrupted too.
        w.inspector.inspect = real
        finished = []
        w.chat_finished.connect(lambda i, answer, cancelled: finished.append((answer, cancelled)))
        w.cancel()
        original_chat = w.inspector.chat

        def stopped_chat(*args, **kwargs):
            yield from original_chat(*args, **kwargs)
            w.cancel()

        w.inspector.chat = stopped_chat
        w.chat(outcome.inspection_id, outcome.image_path, [], "Where is it?")
        assert finished and finished[0][1] and INTERRUPTED in finished[0][0]
        with w.db.Session() as s:
            messages = repository.get_conversation(s, outcome.inspection_id)
        assert INTERRUPTED in messages[-1].content
    finally:
        w.shutdown()


def test_optional_alert_on_a_defective_part(qtbot) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    view.set_model_status(ModelStatus(ModelState.READY, "ready", "m", "few-shot"))
    view.add_outcome(make_outcome(1, verdict="defective"))
    assert view.alerts == 0, "off by default"
    view.alert_on_defective = True
    view.add_outcome(make_outcome(2, verdict="good"))
    view.add_outcome(make_outcome(3, verdict="defective"))
    assert view.alerts == 1
    qtbot.waitUntil(lambda: not view._flash_timer.isActive(), timeout=5000)
    assert "#c62828" in view.banner.styleSheet(), "the banner is back to the verdict's colour"


def test_the_chat_reads_the_map_history_keeps_for_the_inspection(tmp_path) -> None:
    """The chat's evidence is the stored map the screen shows, not one rebuilt with the product now
    active; a stored map that cannot be read leaves the chat answering from a rebuilt one."""
    w = InferenceWorker(Settings(preset="tiny-test", device="cpu", data_dir=str(tmp_path / "data"),
                                 generate_answers=False))
    w._open_storage()
    w._load_model()
    try:
        image = (np.random.default_rng(1).random((64, 80, 3)) * 255).astype(np.uint8)
        outcome = w.inspect_frame(Frame(source="camera:0", index=0, timestamp=time.time(), image=image))
        seen = []
        original_chat = w.inspector.chat

        def recording_chat(*args, **kwargs):
            seen.append(kwargs.get("shown_map"))
            yield from original_chat(*args, **kwargs)

        w.inspector.chat = recording_chat
        w.chat(outcome.inspection_id, outcome.image_path, [], "Where is it?")
        stored = outcome.result.anomaly_map
        assert seen[0] is not None and seen[0].shape == stored.shape
        assert np.abs(seen[0] - stored).max() <= 1 / 255 + 1e-6, "the stored 8-bit map"
        with w.db.Session() as s:
            mask = w.db.files.path(repository.get_inspection(s, outcome.inspection_id).mask_path)
        mask.write_bytes(b"damaged")
        w.chat(outcome.inspection_id, outcome.image_path, [], "Where is it?")
        assert seen[1] is None
        w.chat(-1, outcome.image_path, [], "Where is it?")  # a result that was never stored
        assert seen[2] is None
    finally:
        w.shutdown()


def test_the_live_panel_names_evenly_shared_types_without_percentages(qtbot) -> None:
    """The built-in tower splits evenly among the types the map's shape supports: "pitting (50%), dent
    (50%)" read as a probability it is not."""
    view = LiveView()
    qtbot.addWidget(view)
    even = make_outcome(1)
    even.result.defect_types = [("pitting", 0.5), ("dent", 0.5)]
    view.add_outcome(even)
    assert view.types.text() == "pitting or dent"
    ranked = make_outcome(2, seed=1)
    ranked.result.defect_types = [("pitting", 0.9), ("dent", 0.1)]
    view.add_outcome(ranked)
    assert view.types.text() == "pitting 90 %, dent 10 %"
