"""The whole station, offscreen: folder in, results shown and stored, chat streamed and stored, camera."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt.config import DEFAULT_PRESET
from iadgpt.imageio import load_image
from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.records import InspectionFilter
from iadgpt_desktop.ui.main_window import MainWindow, sample_dir
from iadgpt_desktop.ui.overlay import heatmap_overlay
from iadgpt_desktop.workers.inference import ProductInfo
from tests.app.conftest import emitted, wait_for_model

pytestmark = pytest.mark.usefixtures("_isolated_config")


@pytest.fixture
def _isolated_config(tmp_path, monkeypatch):
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))


@pytest.fixture
def window(station):
    """The started tiny-test station of tests/app/conftest.py."""
    return station


def _copy_samples(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for p in sorted((sample_dir() / "inspect").glob("pitting_*.png"))[:n]:
        shutil.copy(p, folder / p.name)
    return folder


def test_folder_results_are_shown_stored_and_overlaid(window, qtbot, tmp_path) -> None:
    folder = _copy_samples(tmp_path, 3)
    with qtbot.waitSignal(window.batch_done, timeout=120000) as done:
        window.open_folder(folder, watch=False)
    assert done.args == [3, 0]
    with window.db.Session() as s:
        rows = repository.query_inspections(s, InspectionFilter(), limit=10)
        products = repository.list_products(s)
    assert len(rows) == 3
    assert [p["name"] for p in products] == ["Ball screw drive (sample)"]
    assert {r.mode for r in rows} == {"few-shot"}, "an untrained model's sample product gets a memory bank"
    outcome = window.live.outcome
    assert outcome is not None and outcome.inspection_id == max(r.id for r in rows)
    # The overlay is drawn where the map is high: those pixels change most from the raw image.
    window.live.overlay_mode.setCurrentIndex(window.live.overlay_mode.findData("heatmap"))
    window.live.opacity.setValue(100)
    shown = window.live.view.image()
    assert shown is not None and not shown.isNull()
    ptr = shown.constBits()
    drawn = np.frombuffer(ptr, np.uint8).reshape(shown.height(), shown.bytesPerLine())[:, : shown.width() * 3]
    drawn = drawn.reshape(shown.height(), shown.width(), 3).astype(int)
    amap = outcome.result.anomaly_map
    hot = np.unravel_index(int(amap.argmax()), amap.shape)
    cold = np.unravel_index(int(amap.argmin()), amap.shape)
    # The view shows this result's map over this part, in place: each pixel has the legend's colour
    # for the map's value there (the values themselves depend on the model and its calibration).
    expected = heatmap_overlay(load_image(outcome.result.image), amap, 1.0).astype(int)
    assert drawn.shape == expected.shape
    for point in (hot, cold):
        assert np.abs(drawn[point] - expected[point]).max() <= 3, (point, drawn[point], expected[point])
    assert amap[hot] - amap[cold] > 0.05 and np.abs(drawn[hot] - drawn[cold]).max() > 20
    # History shows the batch when the user looks at it.
    window.tabs.setCurrentWidget(window.history)
    qtbot.waitUntil(lambda: window.history.model.rowCount() == 3, timeout=5000)


def test_chat_answer_is_streamed_and_stored(window, qtbot, tmp_path) -> None:
    folder = _copy_samples(tmp_path, 1)
    with qtbot.waitSignal(window.batch_done, timeout=120000):
        window.open_folder(folder, watch=False)
    inspection_id = window.live.outcome.inspection_id
    pieces: list[str] = []
    window.worker.chat_token.connect(lambda _i, piece: pieces.append(piece))
    window.chat.input.setText("Where is the defect?")
    done_id, answer, _cancelled = emitted(qtbot, window.worker.chat_finished, window.chat.send)
    assert done_id == inspection_id
    assert "".join(pieces).strip() == answer
    with window.db.Session() as s:
        messages = repository.get_conversation(s, inspection_id)
    assert [(m.role, m.content) for m in messages][0] == ("user", "Where is the defect?")
    assert messages[1].role == "assistant" and messages[1].content == answer


def test_operator_decision_is_stored(window, qtbot, tmp_path) -> None:
    folder = _copy_samples(tmp_path, 1)
    with qtbot.waitSignal(window.batch_done, timeout=120000):
        window.open_folder(folder, watch=False)
    outcome = window.live.outcome
    window.live.override_button.click()
    with window.db.Session() as s:
        row = repository.get_inspection(s, outcome.inspection_id)
    opposite = "overridden_good" if outcome.result.verdict == "defective" else "overridden_defective"
    assert row.operator_decision == opposite


def test_camera_from_video_shows_frames_and_counts_drops(window, qtbot, tmp_path) -> None:
    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    rng = np.random.default_rng(0)
    for i in range(60):
        frame = (rng.random((120, 160, 3)) * 40 + 100).astype(np.uint8)
        cv2.circle(frame, (20 + 2 * i, 60), 8, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    # Slow the inference below the source's 30 fps: full answers for every frame.
    window.worker.settings = dataclasses.replace(window.worker.settings, generate_answers=True)
    shown: list[int] = []
    results: list[int] = []
    window.session.frame.connect(lambda _f: shown.append(1))
    window.worker.result.connect(lambda _o: results.append(1))
    stats: list = []
    window.session.stats.connect(stats.append)
    window.open_camera(str(video))
    qtbot.waitUntil(lambda: bool(stats) and stats[-1].state.value == "finished", timeout=30000)
    qtbot.waitUntil(lambda: len(results) > 0, timeout=60000)  # the newest frame is still inspected
    assert len(shown) > len(results) > 0, "display follows the camera, inference takes the newest frame"
    assert stats[-1].dropped > 0
    assert "dropped" in window.live.counts.text()


def test_reopened_folder_resumes_without_inspecting_twice(window, qtbot, tmp_path) -> None:
    folder = _copy_samples(tmp_path, 2)
    with qtbot.waitSignal(window.batch_done, timeout=120000):
        window.open_folder(folder, watch=False)
    for p in sorted((sample_dir() / "inspect").glob("pitting_*.png"))[2:3]:  # one new file arrives
        shutil.copy(p, folder / p.name)
    with qtbot.waitSignal(window.batch_done, timeout=120000) as done:
        window.open_folder(folder, watch=False)
    assert done.args == [1, 0], "only the new file is inspected"
    with window.db.Session() as s:
        rows = repository.query_inspections(s, InspectionFilter(), limit=10)
    assert len(rows) == 3 and len({r.image_sha256 for r in rows}) == 3


def test_first_run_with_the_builtin_model_tells_good_from_pitted_samples(qtbot, tmp_path) -> None:
    """The default settings: the built-in model, trained on this product among others, runs it
    zero-shot and its verdicts (the LLM's answer) separate the shipped good and pitted samples."""
    settings = Settings(data_dir=str(tmp_path / "data"), device="cpu")
    assert settings.preset == DEFAULT_PRESET
    w = MainWindow(settings, persist_settings=False)
    qtbot.addWidget(w)
    w.show()
    wait_for_model(qtbot, w, timeout=120000)
    folder = tmp_path / "incoming"
    folder.mkdir()
    names = ["good_015.png", "good_023.png", "pitting_080.png", "pitting_113.png"]
    for name in names:
        shutil.copy(sample_dir() / "inspect" / name, folder / name)
    try:
        with qtbot.waitSignal(w.batch_done, timeout=120000):
            w.open_folder(folder, watch=False)
        with w.db.Session() as s:
            rows = repository.query_inspections(s, InspectionFilter(), limit=10)
        assert len(rows) == 4 and {r.mode for r in rows} == {"zero-shot"}
        from iadgpt.weights import sha256_file

        name_of = {sha256_file(folder / n): n for n in names}
        verdicts = {name_of[r.image_sha256]: r.verdict for r in rows}
        assert verdicts == {"good_015.png": "good", "good_023.png": "good",
                            "pitting_080.png": "defective", "pitting_113.png": "defective"}
    finally:
        w.close()


def test_products_view_refreshes_in_the_gui_thread_when_a_bank_is_built(window, qtbot) -> None:
    """The worker announces a finished memory bank from its own thread; the Products view must be
    refreshed in the GUI thread (touching widgets from the worker crashed the app)."""
    from PySide6.QtCore import QThread

    threads: list = []
    original = window.products.bank_ready

    def record(built) -> None:
        threads.append(QThread.currentThread())
        original(built)

    window.products.bank_ready = record
    with window.db.Session() as s:
        row = repository.list_products(s)[0]
    references = [str(p) for p in sorted((sample_dir() / "reference").glob("*.png"))[:2]]
    emitted(qtbot, window.worker.bank_ready,
            lambda: window.request_bank.emit(ProductInfo(row["id"], row["name"], row["class_name"]), references))
    qtbot.waitUntil(lambda: bool(threads), timeout=5000)
    assert threads[0] is QThread.currentThread() or threads[0] == window.thread()
