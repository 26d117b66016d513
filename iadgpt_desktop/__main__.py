"""`iadgpt-desktop`: start the inspection station (or, with --open/--screenshot, run a batch and save a picture)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="iadgpt-desktop", description=__doc__)
    p.add_argument("--open", type=Path, help="an image or folder to inspect at start")
    p.add_argument("--screenshot", type=Path,
                   help="with --open: wait until every image is inspected, save a PNG of the window, exit")
    p.add_argument("--preset", help="model preset (overrides Settings)")
    p.add_argument("--weights", help="trained weights folder (overrides Settings)")
    p.add_argument("--data-dir", help="data folder for history, images and masks (overrides Settings)")
    p.add_argument("--timeout", type=float, default=600, help="--screenshot gives up after this many seconds")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.screenshot and not args.open:
        print("--screenshot needs --open PATH", file=sys.stderr)
        return 2
    if args.open and not args.open.exists():
        print(f"--open: {args.open} does not exist", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are only ever read locally

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from iadgpt_desktop.settings import load_settings
    from iadgpt_desktop.ui.main_window import MainWindow

    saved = load_settings()
    overrides = {k: v for k, v in (("preset", args.preset), ("weights_dir", args.weights),
                                   ("data_dir", args.data_dir)) if v}
    settings = dataclasses.replace(saved, **overrides)  # for this run only: never written to settings.json
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("IAD-GPT Desktop")
    window = MainWindow(settings, persist_settings=not args.screenshot, saved_settings=saved)
    window.show()
    exit_code = 0

    if args.open:
        if args.open.is_dir():
            QTimer.singleShot(0, lambda: window.open_folder(args.open, watch=not args.screenshot))
        else:
            QTimer.singleShot(0, lambda: window.open_paths([args.open]))
    if args.screenshot:
        def save(done: int, failed: int) -> None:
            nonlocal exit_code
            window.history.refresh()

            def grab(*_shown) -> None:
                QTimer.singleShot(400, lambda: _grab_and_quit(window, args.screenshot, app))

            if window.reading_earlier:  # a reopened folder: its earlier results are on screen first
                window.earlier_shown.connect(grab)
            else:
                grab()
            skipped = window.last_batch.skipped if window.last_batch is not None else 0
            print(f"inspected {done} image(s), {failed} failed, {skipped} skipped (inspected before); "
                  f"screenshot: {args.screenshot}")
            exit_code = 1 if failed else 0

        def give_up() -> None:
            nonlocal exit_code
            print(f"gave up after {args.timeout:.0f} s; screenshot of the current state: {args.screenshot}",
                  file=sys.stderr)
            exit_code = 3
            _grab_and_quit(window, args.screenshot, app)

        window.batch_done.connect(save)
        QTimer.singleShot(int(args.timeout * 1000), give_up)
    code = app.exec()
    return exit_code or code


def _grab_and_quit(window, path: Path, app) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(path))
    window.close()
    app.quit()


if __name__ == "__main__":
    sys.exit(main())
