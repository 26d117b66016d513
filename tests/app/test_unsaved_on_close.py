"""Closing the station with results that could not be stored says so, and the next start stores them."""

from __future__ import annotations

import shutil

import pytest

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.errors import StorageError
from iadgpt_desktop.storage.records import InspectionFilter
from iadgpt_desktop.ui.main_window import MainWindow, sample_dir
from tests.app.conftest import wait_for_model


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path, monkeypatch):
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))


def _window(qtbot, tmp_path) -> MainWindow:
    w = MainWindow(Settings(preset="tiny-test", data_dir=str(tmp_path / "data"), device="cpu"),
                   persist_settings=False)
    qtbot.addWidget(w)
    w.show()
    wait_for_model(qtbot, w)
    return w


def test_unsaved_results_are_announced_on_close_and_saved_at_the_next_start(qtbot, tmp_path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for p in sorted((sample_dir() / "inspect").glob("pitting_*.png"))[:2]:
        shutil.copy(p, folder / p.name)

    def down(*_a, **_k):
        raise StorageError("the inspection database is locked: another program kept it busy")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(repository, "add_batch_inspection", down)  # every write fails while this window runs
        first = _window(qtbot, tmp_path)
        shown, said = [], []
        first.worker.result.connect(shown.append)
        first.worker.storage_message.connect(said.append)
        with qtbot.waitSignal(first.batch_done, timeout=120000) as done:
            first.open_folder(folder, watch=False)
        assert done.args == [2, 0]  # both shown
        assert len(shown) == 2 and all(o.not_saved and o.inspection_id is None for o in shown)
        qtbot.waitUntil(lambda: any(m.startswith("not saved: ") for m in said), timeout=5000)
        first.close()
    assert first.unsaved_on_close and "2 shown result(s) are not saved" in first.unsaved_on_close
    assert "will be saved at the next start" in first.unsaved_on_close

    second = _window(qtbot, tmp_path)

    def stored() -> int:
        with second.db.Session() as s:
            return repository.count_inspections(s, InspectionFilter())
    qtbot.waitUntil(lambda: stored() == 2, timeout=30000)
    second.close()
    assert second.unsaved_on_close is None
