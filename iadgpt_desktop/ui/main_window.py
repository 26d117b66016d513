"""The main window: composes the views, owns the worker thread and the inspection session."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox, QTabWidget

from iadgpt.imageio import iter_image_files
from iadgpt.prompt_bank import default_bank_dir
from iadgpt.weights import sha256_file
from iadgpt_desktop.settings import Settings, save_settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.ui.chat_pane import ChatPane
from iadgpt_desktop.ui.history_view import HistoryView
from iadgpt_desktop.ui.live_view import LiveView
from iadgpt_desktop.ui.products_view import ProductsView
from iadgpt_desktop.ui.settings_dialog import SettingsDialog
from iadgpt_desktop.workers.inference import InspectionOutcome, ProductInfo, start_worker, stop_worker
from iadgpt_desktop.workers.session import InspectionSession

log = logging.getLogger(__name__)

SAMPLE_PRODUCT = "Ball screw drive (sample)"
SAMPLE_CLASS = "ball_screw_drive"


def sample_dir() -> Path:
    """The shipped sample images (BSData, CC BY-SA 4.0)."""
    return default_bank_dir().parent / "samples" / SAMPLE_CLASS


class MainWindow(QMainWindow):
    # Requests to the worker: queued across threads by Qt because the worker lives on its own thread.
    request_settings = Signal(object)
    request_product = Signal(object)
    request_chat = Signal(int, str, object, str)
    request_bank = Signal(int, object)
    request_sample_bank = Signal(int, object)  # product id, reference paths: built only for an untrained model
    batch_done = Signal(int, int)  # inspected, failed: every image of an --open batch is done

    def __init__(self, settings: Settings, *, persist_settings: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.persist_settings = persist_settings
        self.setWindowTitle("IAD-GPT Desktop — inspection station")
        self.resize(1360, 820)
        self.db: Database | None = None
        self._open_db()

        self.thread, self.worker = start_worker(settings)
        self.session = InspectionSession(self.worker, self)
        self.live = LiveView()
        self.history = HistoryView(lambda: self.db)
        self.products = ProductsView(lambda: self.db)
        self.chat = ChatPane()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.history, "History")
        self.tabs.addTab(self.products, "Products")
        self.setCentralWidget(self.tabs)
        dock = QDockWidget("Chat about the inspection", self)
        dock.setObjectName("chat")
        dock.setWidget(self.chat)
        self.chat.setMinimumWidth(360)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.model_label = QLabel("model: starting …")
        self.statusBar().addPermanentWidget(self.model_label)

        self._batch_total: int | None = None
        self._batch_done = self._batch_failed = 0
        self._wire()
        self._menus()
        self._apply_overlay_settings()
        self._first_run()

    # -- wiring ----------------------------------------------------------------------------------
    def _wire(self) -> None:
        w = self.worker
        self.request_settings.connect(w.apply_settings)
        self.request_product.connect(w.set_product)
        self.request_chat.connect(w.chat)
        self.request_bank.connect(w.build_memory_bank)
        self.request_sample_bank.connect(w.build_memory_bank_if_untrained)
        w.model_state.connect(self._model_state)
        w.result.connect(self._on_result)
        w.failed.connect(self._on_failed)
        w.chat_token.connect(self.chat.append_token)
        w.chat_finished.connect(self.chat.finish)
        w.progress.connect(self._on_progress)
        w.saved_later.connect(self._on_saved_later)
        w.bank_ready.connect(self.products.bank_ready)
        # A bound method of this window, not a lambda: a lambda has no thread of its own, so Qt would
        # call it in the worker's thread and touch the Products widgets from there (crash seen in CI).
        w.bank_ready.connect(self._on_bank_ready)
        self.session.frame.connect(self.live.show_frame)
        self.session.stats.connect(self.live.show_stats)
        self.live.open_files.connect(lambda paths: self.open_paths([Path(p) for p in paths]))
        self.live.open_folder.connect(lambda folder: self.open_folder(Path(folder), watch=True))
        self.live.open_camera.connect(self.open_camera)
        self.live.pause_requested.connect(self.session.pause)
        self.live.resume_requested.connect(self.session.resume)
        self.live.stop_requested.connect(self.session.stop)
        self.live.decision.connect(self._record_decision)
        self.live.overlay_changed.connect(self._overlay_changed)
        self.chat.ask.connect(self.request_chat)
        self.chat.stop_requested.connect(self.worker.cancel)
        self.history.inspection_selected.connect(self._show_history_item)
        self.products.product_activated.connect(self._activate_product)
        self.products.build_bank_requested.connect(lambda pid, paths: self.request_bank.emit(pid, list(paths)))

    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot, key in (("Open &files…", self.live._choose_files, QKeySequence.StandardKey.Open),
                                ("Open f&older…", self.live._choose_folder, None),
                                ("&Camera…", self.live._choose_camera, None)):
            action = QAction(text, self)
            if key is not None:
                action.setShortcut(key)
            action.triggered.connect(slot)
            file_menu.addAction(action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        settings_action = QAction("&Settings…", self)
        settings_action.triggered.connect(self.edit_settings)
        self.menuBar().addAction(settings_action)

    def _open_db(self) -> None:
        try:
            self.db = Database.open(self.settings.data_path, self.settings.database_url or None)
        except Exception as exc:  # noqa: BLE001 - the boundary: keep the app running without history
            log.exception("cannot open the database")
            self.db = None
            self.statusBar().showMessage(f"History unavailable: {exc}")

    def _first_run(self) -> None:
        """With an empty history, set up the shipped sample product so the first run shows something real.

        With trained weights (the built-in demo model was trained on this product) it runs zero-shot,
        the mode the model was trained for; an untrained model gets a few-shot memory bank from the
        shipped reference images instead, so its maps still mean something. The worker, which has
        loaded the model, makes that choice. Requests are queued to the worker before any source is
        opened, so both are in place before the first inspection.
        """
        if self.db is None:
            return
        try:
            with self.db.Session.begin() as s:
                if repository.list_products(s):
                    return
                pid = repository.get_or_create_product(s, SAMPLE_PRODUCT, SAMPLE_CLASS)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.warning("could not create the sample product: %s", exc)
            return
        references = [str(p) for p in iter_image_files([sample_dir() / "reference"])]
        self.request_product.emit(ProductInfo(pid, SAMPLE_PRODUCT, SAMPLE_CLASS))
        self.request_sample_bank.emit(pid, references)  # the worker knows whether its model is trained
        self.products.refresh()

    def _on_bank_ready(self, _product_id: int, _patches: int) -> None:
        self.products.refresh()

    # -- sources ---------------------------------------------------------------------------------
    def _start_batch(self, paths: list[Path], skip=None) -> None:
        files = iter_image_files(paths)
        self._batch_total = sum(1 for p in files if not (skip and skip(p)))
        self._batch_done = self._batch_failed = 0
        if self._batch_total == 0:
            QTimer.singleShot(0, lambda: self.batch_done.emit(0, 0))

    def open_paths(self, paths: list[Path]) -> None:
        self._start_batch(paths)
        self.session.open_files(paths)
        self.tabs.setCurrentWidget(self.live)

    def open_folder(self, folder: Path, watch: bool = True) -> None:
        """Inspect every image in a folder, then watch it; files already inspected from it are skipped,
        so reopening a folder after a crash or restart resumes the batch."""
        folder = Path(folder).resolve()
        skip = self._skip_inspected(f"folder:{folder}")
        self._start_batch([folder], skip)
        self.session.open_folder(folder, watch=watch, skip=skip)
        self.tabs.setCurrentWidget(self.live)

    def _skip_inspected(self, source: str):
        """A thread-safe test for the folder source: is this file's content already stored for source?"""
        if self.db is None:
            return None
        try:
            with self.db.Session() as s:
                done = frozenset(repository.processed_image_hashes(s, source))
        except Exception as exc:  # noqa: BLE001 - the boundary: inspect everything rather than nothing
            log.warning("cannot read which files were inspected already: %s", exc)
            return None
        if not done:
            return None

        def skip(path: Path) -> bool:
            try:
                return sha256_file(path) in done
            except OSError:
                return False  # unreadable now: the inspection will say why
        return skip

    def open_camera(self, spec: str) -> None:
        self._batch_total = None
        self.session.open_camera(int(spec) if spec.isdigit() else spec)
        self.tabs.setCurrentWidget(self.live)

    def _count(self, failed: bool) -> None:
        if self._batch_total is None:
            return
        if failed:
            self._batch_failed += 1
        else:
            self._batch_done += 1
        if self._batch_done + self._batch_failed >= self._batch_total:
            self.batch_done.emit(self._batch_done, self._batch_failed)
            self._batch_total = None

    # -- worker reports --------------------------------------------------------------------------
    def _model_state(self, state: str, message: str) -> None:
        self.model_label.setText(f"model: {message}" if state != "failed" else "model: NOT LOADED")
        if state == "failed":
            self.statusBar().showMessage(f"The model could not be loaded: {message}")
            QMessageBox.warning(self, "Model not loaded", message + "\n\nOpen Settings to choose another "
                                "preset or weights folder.")

    def _on_result(self, outcome: InspectionOutcome) -> None:
        self.live.show_outcome(outcome)
        self.model_label.setText(f"model: {outcome.result.model_id}, mode {outcome.result.mode}")
        path = self._image_path(outcome)
        self.chat.set_inspection(outcome.inspection_id, path, outcome.result.answer, [])
        self.history.schedule_refresh()
        if outcome.not_saved:  # shown, but not in the history (yet): say so where it stays visible
            self.statusBar().showMessage(f"not saved: {outcome.not_saved}")
        self._count(failed=False)

    def _on_saved_later(self, outcome: InspectionOutcome) -> None:
        if self.live.outcome is outcome:
            self.live.show_outcome(outcome)  # now stored: the decision buttons work
        self.history.schedule_refresh()

    def _image_path(self, outcome: InspectionOutcome) -> str:
        if outcome.result.image:
            return outcome.result.image
        if self.db is not None and outcome.inspection_id is not None:
            with self.db.Session() as s:
                row = repository.get_inspection(s, outcome.inspection_id)
            if row is not None:
                return str(self.db.files.path(row.image_path))
        return ""

    def _on_failed(self, task: str, message: str) -> None:
        log.warning("%s: %s", task, message)
        self.statusBar().showMessage(f"{task}: {message}", 15000)
        if task == "inspect":
            self._count(failed=True)
        elif task == "chat":
            self.chat.fail()
        elif task == "memory bank":
            self.products.bank_failed(message)

    def _on_progress(self, task: str, done: int, total: int) -> None:
        if task == "memory bank":
            self.products.bank_progress(done, total)
        self.statusBar().showMessage(f"{task}: {done}/{total}", 3000)

    # -- user actions ------------------------------------------------------------------------------
    def _record_decision(self, inspection_id: int, decision: str) -> None:
        if self.db is None:
            return
        try:
            with self.db.Session.begin() as s:
                repository.set_operator_decision(s, inspection_id, decision, operator=self.settings.operator or None)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("storing the decision failed")
            self.statusBar().showMessage(f"The decision was NOT saved: {exc}", 15000)
            return
        self.history.schedule_refresh()

    def _show_history_item(self, row, messages: list) -> None:
        path = str(self.db.files.path(row.image_path)) if self.db else ""
        self.chat.set_inspection(row.id, path, row.answer,
                                 [{"role": m.role, "content": m.content} for m in messages])

    def _activate_product(self, product: ProductInfo) -> None:
        self.request_product.emit(product)
        self.statusBar().showMessage(f"Inspecting product '{product.name}' ({product.mode})", 5000)

    def _overlay_changed(self, mode: str, opacity: float, visible: bool) -> None:
        self._set_settings(Settings(**{**self.settings.__dict__, "overlay_mode": mode,
                                       "overlay_opacity": opacity, "overlay_visible": visible}))

    def _apply_overlay_settings(self) -> None:
        s = self.settings
        self.live.overlay_visible.setChecked(s.overlay_visible)
        index = self.live.overlay_mode.findData(s.overlay_mode)
        self.live.overlay_mode.setCurrentIndex(max(index, 0))
        self.live.opacity.setValue(round(s.overlay_opacity * 100))

    def edit_settings(self) -> None:
        updated = SettingsDialog.edit(self.settings, self)
        if updated is None or updated == self.settings:
            return
        storage_changed = updated.storage_key() != self.settings.storage_key()
        self._set_settings(updated)
        if storage_changed:
            if self.db:
                self.db.close()
            self._open_db()
            self.history.refresh()
            self.products.refresh()
        self.request_settings.emit(updated)

    def _set_settings(self, settings: Settings) -> None:
        self.settings = settings
        if self.persist_settings:
            try:
                save_settings(settings)
            except OSError as exc:
                self.statusBar().showMessage(f"Settings not saved: {exc}", 10000)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.session.stop()
        stop_worker(self.thread, self.worker)
        self.unsaved_on_close = self.worker.unsaved_summary()  # the worker has stopped: safe to read
        if self.unsaved_on_close:
            log.warning("%s", self.unsaved_on_close)
            if QApplication.platformName() != "offscreen":
                QMessageBox.warning(self, "Results not saved", self.unsaved_on_close)
        if self.db:
            self.db.close()
        super().closeEvent(event)
