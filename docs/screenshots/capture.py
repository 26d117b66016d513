"""Regenerate the README screenshots: run the station offscreen on the shipped samples and grab each view.

The samples are inspected zero-shot (the sample product), then a new product is onboarded few-shot from
the shipped good references: Live shows a part of it with its nearest good reference beside it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/capture.py [--preset NAME] [--weights DIR]
    xvfb-run -s "-screen 0 1366x768x24" env QT_QPA_PLATFORM=xcb .venv/bin/python docs/screenshots/capture.py \
        --size 1366x768          # a real X window; writes live-1366x768.png, ...
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from iadgpt_desktop.settings import Settings  # noqa: E402
from iadgpt_desktop.ui.main_window import MainWindow, sample_dir  # noqa: E402
from iadgpt_desktop.ui.settings_dialog import SettingsDialog  # noqa: E402

OUT = Path(__file__).resolve().parent


def wait_for(signal, timeout_ms: int = 300000) -> list:
    loop = QEventLoop()
    got: list = []
    signal.connect(lambda *a: (got.extend(a), loop.quit()))
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    return got


def pause(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="unified-lite0")
    parser.add_argument("--weights", default="")
    parser.add_argument("--size", help="WIDTHxHEIGHT: a maximised window of that screen, files named *-WxH.png")
    args = parser.parse_args()
    suffix = f"-{args.size}" if args.size else ""
    os.environ["IADGPT_DESKTOP_CONFIG"] = tempfile.mkdtemp(prefix="iadgpt-shots-config-")
    app = QApplication.instance() or QApplication([])  # noqa: F841 - kept alive for the windows
    data = tempfile.mkdtemp(prefix="iadgpt-shots-data-")
    w = MainWindow(Settings(preset=args.preset, weights_dir=args.weights, data_dir=data), persist_settings=False)
    if args.size:
        width, height = (int(v) for v in args.size.split("x"))
        w.resize(width, height)
        w.showMaximized()
    else:
        w.resize(1440, 860)
        w.show()
    w.open_folder(sample_dir() / "inspect", watch=False)
    wait_for(w.batch_done)
    # A new product onboarded few-shot from the good references, so Live shows the nearest one beside the part.
    w.products.create_product("Spindle housings", "generic")
    w.products.add_references(sorted((sample_dir() / "reference").glob("*.png")))
    wait_for(w.products.references_checked)  # checked off the GUI thread before they are added
    w.products.build_bank()
    wait_for(w.worker.bank_ready)
    pause(300)
    # Show a defective sample in the live view and ask about it in the chat.
    w.open_paths([sorted((sample_dir() / "inspect").glob("pitting_*.png"))[-1]])
    wait_for(w.batch_done)
    w.chat.input.setText("Where is the defect?")
    w.chat.send()
    wait_for(w.worker.chat_finished)
    pause(300)
    w.grab().save(str(OUT / f"live{suffix}.png"))
    w.tabs.setCurrentWidget(w.history)
    pause(800)
    w.history.table.selectRow(0)
    pause(500)
    w.grab().save(str(OUT / f"history{suffix}.png"))
    w.tabs.setCurrentWidget(w.products)
    w.products.refresh()
    pause(500)
    w.grab().save(str(OUT / f"products{suffix}.png"))
    dialog = SettingsDialog(w.settings, w)
    dialog.show()
    pause(300)
    dialog.grab().save(str(OUT / f"settings{suffix}.png"))
    dialog.close()
    w.close()
    print("wrote", ", ".join(p.name for p in sorted(OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
