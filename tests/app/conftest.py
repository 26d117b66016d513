"""A whole station (tiny-test model, CPU, offscreen) and sample images, for the app tests."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, QTimer

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.ui.main_window import DEFAULT_SIZE, MainWindow, sample_dir


def model_ready(status) -> bool:
    return status.state.value == "ready"


class Emissions(QObject):
    """The arguments of every emission of a worker's signal, received in the GUI thread (queued).

    For `qtbot.waitUntil(lambda: spy.args)`: pytest-qt's waitSignal runs its callback in the thread
    that emits, the worker's, and one such wait crashed a CI run while the test closed the window.
    """

    def __init__(self, signal) -> None:
        super().__init__()
        self.args: list[tuple] = []
        signal.connect(self._record, Qt.ConnectionType.QueuedConnection)

    def _record(self, *args) -> None:
        self.args.append(args)


def emitted(qtbot, signal, action, check=None, timeout: int = 60000) -> tuple:
    """Run `action` and wait until the worker's `signal` is emitted with arguments that `check` accepts
    (any, without one); returns those arguments. Checked in the GUI thread (see Emissions)."""
    spy = Emissions(signal)
    action()

    def hit() -> tuple | None:
        return next((a for a in spy.args if check is None or check(*a)), None)

    qtbot.waitUntil(lambda: hit() is not None, timeout=timeout)
    return hit()


def wait_for_worker(qtbot, window: MainWindow, timeout: int = 120000) -> None:
    """Until the worker thread has done everything queued to it before now (the first run's bank build,
    say) and has emitted its signals: a no-op queued behind that work, waited for."""
    done = threading.Event()
    QTimer.singleShot(0, window.worker, done.set)
    qtbot.waitUntil(done.is_set, timeout=timeout)


def wait_for_model(qtbot, window: MainWindow, timeout: int = 60000) -> None:
    """Until the window's own copy of the model status (set in the GUI thread) says ready."""
    qtbot.waitUntil(lambda: model_ready(window.model_status), timeout=timeout)


def start_station(qtbot, settings: Settings) -> MainWindow:
    """A station shown and its model loaded."""
    w = MainWindow(settings, persist_settings=False)
    qtbot.addWidget(w)
    # The offscreen screen is 800x800, so the window would open at its minimum size (it fits the screen):
    # the tests lay it out at the size a desktop screen gives it.
    w.resize(DEFAULT_SIZE)
    w.show()
    wait_for_model(qtbot, w)
    return w


@pytest.fixture
def station(qtbot, tmp_path, monkeypatch):
    """A started station whose model is loaded; settings are kept in tmp_path."""
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))
    w = start_station(qtbot, Settings(preset="tiny-test", data_dir=str(tmp_path / "data"), device="cpu"))
    yield w
    w.close()


@pytest.fixture
def builtin_station(qtbot, tmp_path, monkeypatch):
    """The same with the built-in model (a pretrained image tower: image similarity means something)."""
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))
    w = start_station(qtbot, Settings(preset="unified-lite0", data_dir=str(tmp_path / "data"), device="cpu",
                                      generate_answers=False))
    yield w
    w.close()


def copy_samples(folder: Path, pattern: str = "*.png", n: int | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in sorted((sample_dir() / "inspect").glob(pattern))[:n]:
        copied.append(Path(shutil.copy(p, folder / p.name)))
    return copied
