"""The main window: composes the views, owns the worker thread, the inspection session and the database.

One `Database` is opened here and shared with the worker (one engine, one migration run). The worker
reports with one typed signal per outcome (`workers.contract`); this window routes each to the view
that shows it. What the operator reads (the Live selection, or the History row when History is in
front) is what the chat asks about. A folder opened again shows the stored results of the images it
skips as inspected before (read from History on a thread of their own, `workers.stored`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox, QTabWidget

from iadgpt.imageio import iter_image_files
from iadgpt.inspector import shipped_weights
from iadgpt.prompt_bank import default_bank_dir
from iadgpt_desktop.qt_compat import guard_signal_refcounts
from iadgpt_desktop.settings import Settings, save_settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.ui.about import AboutDialog, about_text
from iadgpt_desktop.ui.chat_pane import ChatPane
from iadgpt_desktop.ui.history_view import HistoryView
from iadgpt_desktop.ui.live_view import LiveView, describe_progress
from iadgpt_desktop.ui.products_view import ProductsView, can_inspect, product_info
from iadgpt_desktop.ui.recent_strip import CAPACITY as STRIP_CAPACITY
from iadgpt_desktop.ui.recent_strip import outcome_label
from iadgpt_desktop.ui.settings_dialog import SettingsDialog
from iadgpt_desktop.workers.contract import (
    BankBuilt,
    InspectionFailure,
    ModelState,
    ModelStatus,
    ProductMode,
)
from iadgpt_desktop.workers.inference import InspectionOutcome, ProductInfo, start_worker, stop_worker
from iadgpt_desktop.workers.session import InspectionSession, SessionStats
from iadgpt_desktop.workers.sources import SourceState
from iadgpt_desktop.workers.stored import AlreadyInspected, EarlierResults, EarlierResultsReader

log = logging.getLogger(__name__)

DEFAULT_SIZE = QSize(1360, 820)  # the window at start, where the screen has room for it
# What the window manager adds around the window (title bar, borders), which resize() does not count.
FRAME_ALLOWANCE = QSize(16, 40)

SAMPLE_PRODUCT = "Ball screw drive (sample)"
SAMPLE_CLASS = "ball_screw_drive"


def fitted_size(available: QRect | None, minimum: QSize) -> QSize:
    """The window's size at start: `DEFAULT_SIZE`, made smaller where the screen's free area (`available`,
    panels and task bar left out) is smaller, with room for the frame; never below `minimum`."""
    size = QSize(DEFAULT_SIZE)
    if available is not None and available.isValid():
        size = size.boundedTo(available.size() - FRAME_ALLOWANCE)
    return size.expandedTo(minimum)


def sample_dir() -> Path:
    """The shipped sample images (BSData, CC BY-SA 4.0)."""
    return default_bank_dir().parent / "samples" / SAMPLE_CLASS


class MainWindow(QMainWindow):
    # Requests to the worker: queued across threads by Qt because the worker lives on its own thread.
    request_settings = Signal(object)
    request_database = Signal(object)
    request_product = Signal(object)
    request_chat = Signal(int, str, object, str)
    request_bank = Signal(object, object)  # ProductInfo, reference paths
    request_sample_bank = Signal(object, object)  # the same, built only for an untrained model
    batch_done = Signal(int, int)  # inspected, failed: every image of an --open batch is done
    earlier_shown = Signal(int, int)  # results shown from History, problems: a reopened folder's earlier results

    def __init__(self, settings: Settings, *, persist_settings: bool = True,
                 saved_settings: Settings | None = None) -> None:
        """`saved_settings` are those on disk when `settings` carry command-line overrides: only what
        the user changes in the app is written back, never an override."""
        super().__init__()
        guard_signal_refcounts()
        self.settings = settings
        self.persist_settings = persist_settings
        self._saved = saved_settings or settings
        self._started_with = settings
        self.setWindowTitle("IAD-GPT Desktop — inspection station")
        self.db: Database | None = None
        self._retired: list[Database] = []  # replaced databases, closed at exit (the worker may still write)
        self._open_db()
        self.model_status = ModelStatus(ModelState.LOADING, "starting …")

        self.thread, self.worker = start_worker(settings, self.db)
        self.session = InspectionSession(self.worker, self)
        self.last_batch: SessionStats | None = None  # the last batch that finished (what batch_done reports)
        self.earlier_reader = EarlierResultsReader(self)
        self._awaiting_scan: AlreadyInspected | None = None  # a reopened folder whose scan has not ended yet
        self._earlier_request: int | None = None  # the read of its earlier results under way
        self._earlier_after: InspectionOutcome | None = None  # the newest Live result when it was asked for
        self.live = LiveView()
        self.history = HistoryView(lambda: self.db)
        self.products = ProductsView(lambda: self.db, max_pixels=lambda: self.settings.max_pixels)
        self.chat = ChatPane()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.history, "History")
        self.tabs.addTab(self.products, "Products")
        self.setCentralWidget(self.tabs)
        self.chat_dock = QDockWidget("Chat about the inspection", self)
        self.chat_dock.setObjectName("chat")
        self.chat_dock.setWidget(self.chat)
        self.chat.setMinimumWidth(280)
        self.chat_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                                   | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                                   | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.chat_dock)
        self.model_label = QLabel("model: starting …")
        self.model_label.setTextFormat(Qt.TextFormat.PlainText)
        self.statusBar().addPermanentWidget(self.model_label)

        self._wire()
        self._menus()
        self._apply_overlay_settings()
        self.live.alert_on_defective = settings.alert_on_defective
        self._first_run()
        self._fit_to_screen()

    def _fit_to_screen(self) -> None:
        """Open at a size that fits the screen (a 1366x768 laptop: status bar and chat buttons in view),
        inside its free area."""
        screen = self.screen() or QApplication.primaryScreen()
        available = screen.availableGeometry() if screen is not None else None
        self.resize(fitted_size(available, self.minimumSizeHint()))
        if available is not None and available.isValid():
            frame = QRect(available.topLeft(), self.size() + FRAME_ALLOWANCE)
            frame.moveCenter(available.center())
            self.move(max(frame.left(), available.left()), max(frame.top(), available.top()))

    # -- wiring ----------------------------------------------------------------------------------
    def _wire(self) -> None:
        w = self.worker
        self.request_settings.connect(w.apply_settings)
        self.request_database.connect(w.use_database)
        self.request_product.connect(w.set_product)
        self.request_chat.connect(w.chat)
        self.request_bank.connect(w.build_memory_bank)
        self.request_sample_bank.connect(w.build_memory_bank_if_untrained)
        # Every worker signal goes to a bound method of a widget on this (GUI) thread, connected once.
        w.model_state.connect(self._model_state)
        w.settings_applied.connect(self._settings_applied)
        w.settings_rejected.connect(self._settings_rejected)
        w.result.connect(self._on_result)
        w.inspection_failed.connect(self._inspection_failed)
        w.chat_token.connect(self.chat.append_token)
        w.chat_finished.connect(self.chat.finish)
        w.chat_finished.connect(self.history.conversation_stored)  # History's detail shows the new turn
        w.chat_failed.connect(self._chat_failed)
        w.bank_progress.connect(self.products.bank_progress)
        w.bank_ready.connect(self._bank_ready)
        w.bank_failed.connect(self.products.bank_failed)
        w.product_changed.connect(self._product_changed)
        w.product_failed.connect(self._product_failed)
        w.storage_message.connect(self._storage_message)
        w.saved_later.connect(self._on_saved_later)
        self.session.frame.connect(self.live.show_frame)
        self.session.stats.connect(self.live.show_stats)
        self.session.finished.connect(self._batch_finished)
        self.session.stats.connect(self._session_stats)
        self.earlier_reader.ready.connect(self._earlier_results)
        self.live.open_files.connect(lambda paths: self.open_paths([Path(p) for p in paths]))
        self.live.open_folder.connect(lambda folder: self.open_folder(Path(folder), watch=True))
        self.live.open_camera.connect(self.open_camera)
        self.live.pause_requested.connect(self.session.pause)
        self.live.resume_requested.connect(self.session.resume)
        self.live.stop_requested.connect(self.session.stop)
        self.live.decision.connect(self._record_decision)
        self.live.overlay_changed.connect(self._overlay_changed)
        self.live.selection_changed.connect(self._live_selection)
        self.chat.ask.connect(self.request_chat)
        self.chat.typing.connect(lambda: self.live.set_following(False))
        # cancel() is thread-safe: call it here, not queued behind the very job it should stop.
        self.chat.stop_requested.connect(lambda: self.worker.cancel())
        self.products.cancel_bank_requested.connect(lambda: self.worker.cancel_bank())
        self.history.inspection_selected.connect(self._show_history_item)
        self.products.product_activated.connect(self._activate_product)
        self.products.build_bank_requested.connect(lambda info, paths: self.request_bank.emit(info, list(paths)))
        self.tabs.currentChanged.connect(self._tab_changed)

    def _menus(self) -> None:
        """Menus and keyboard shortcuts; each shortcut is named in its button's tooltip and in
        Help > Keyboard shortcuts."""
        self.shortcut_actions: list[QAction] = []

        def action(menu, text: str, slot, key=None, button=None) -> QAction:
            a = QAction(text, self)
            if key is not None:
                a.setShortcut(QKeySequence(key))
                a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.triggered.connect(slot)
            menu.addAction(a)
            self.addAction(a)
            if key is not None:
                self.shortcut_actions.append(a)
            if button is not None and key is not None:
                shown = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
                button.setToolTip(f"{text.replace('&', '').rstrip('…')} ({shown})")
            return a

        live = self.live
        file_menu = self.menuBar().addMenu("&File")
        action(file_menu, "Open &files…", live._choose_files, QKeySequence.StandardKey.Open)
        action(file_menu, "Open f&older…", live._choose_folder, "Ctrl+Shift+O")
        action(file_menu, "&Camera…", live._choose_camera)
        file_menu.addSeparator()
        action(file_menu, "&Settings…", self.edit_settings, "Ctrl+,")
        file_menu.addSeparator()
        action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        inspect = self.menuBar().addMenu("&Inspection")
        action(inspect, "&Pause / resume", live.toggle_pause, "F5", live.pause_button)
        action(inspect, "&Stop", lambda: live.stop_button.isEnabled() and live.stop_button.click(), "Shift+F5",
               live.stop_button)
        inspect.addSeparator()
        action(inspect, "&Confirm the verdict", self._confirm, "F2", live.confirm_button)
        action(inspect, "&Override the verdict", self._override, "F3", live.override_button)
        inspect.addSeparator()
        action(inspect, "P&revious result", live.show_previous, "Alt+Left", live.previous_button)
        action(inspect, "&Next result", live.show_next, "Alt+Right", live.next_button)
        self.follow_action = action(inspect, "&Follow live", lambda: live.set_following(not live.follow.isChecked()),
                                    "Ctrl+L", live.follow)

        view = self.menuBar().addMenu("&View")
        action(view, "&Live", lambda: self.tabs.setCurrentWidget(self.live), "Ctrl+1")
        action(view, "&History", lambda: self.tabs.setCurrentWidget(self.history), "Ctrl+2")
        action(view, "&Products", lambda: self.tabs.setCurrentWidget(self.products), "Ctrl+3")
        action(view, "&Search history", self._focus_search, "Ctrl+F", self.history.search)
        view.addSeparator()
        action(view, "&Fit image", live.view.fit, "Ctrl+0", live.fit_button)
        action(view, "Zoom &in", live.view.zoom_in, "Ctrl+=")
        action(view, "Zoom &out", live.view.zoom_out, "Ctrl+-")
        view.addSeparator()
        chat_toggle = self.chat_dock.toggleViewAction()
        chat_toggle.setText("&Chat pane")
        chat_toggle.setShortcut(QKeySequence("Ctrl+Shift+C"))
        view.addAction(chat_toggle)
        self.shortcut_actions.append(chat_toggle)
        action(view, "Ask a &question", self._focus_chat, "Ctrl+K", self.chat.input)

        help_menu = self.menuBar().addMenu("&Help")
        action(help_menu, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        action(help_menu, "&About IAD-GPT Desktop", self.show_about)

    def shortcuts(self) -> list[tuple[str, str]]:
        """(what it does, key) for every shortcut, as Help > Keyboard shortcuts lists them."""
        return [(a.text().replace("&", "").rstrip("…"), a.shortcut().toString(QKeySequence.SequenceFormat.NativeText))
                for a in self.shortcut_actions]

    def show_shortcuts(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts",
                          "\n".join(f"{key:<14}  {what}" for what, key in self.shortcuts()), parent=self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setStyleSheet("QLabel{font-family:monospace;}")
        box.open()
        self._shortcuts_box = box

    def show_about(self) -> None:
        s = self.settings
        model_folder = Path(s.weights_dir) if s.weights_dir else shipped_weights(s.preset)
        box = AboutDialog(about_text(self.model_status, model_folder, sample_dir()), parent=self)
        box.open()
        self._about_box = box

    def _focus_search(self) -> None:
        self.tabs.setCurrentWidget(self.history)
        self.history.search.setFocus()
        self.history.search.selectAll()

    def _focus_chat(self) -> None:
        self.chat_dock.show()
        self.chat.input.setFocus()

    def _confirm(self) -> None:
        if self.tabs.currentWidget() is self.live:
            self.live.confirm()

    def _override(self) -> None:
        if self.tabs.currentWidget() is self.live:
            self.live.override()

    # -- storage -----------------------------------------------------------------------------------
    def _open_db(self) -> bool:
        try:
            self.db = Database.open(self.settings.data_path, self.settings.database_url or None)
        except Exception as exc:  # noqa: BLE001 - the boundary: keep the app running without history
            log.exception("cannot open the database")
            self.db = None
            self.statusBar().showMessage(f"History unavailable: {exc}")
            return False
        return True

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
                stored = repository.list_products(s)
                if stored:
                    self._resume_product(stored)
                    return
                pid = repository.get_or_create_product(s, SAMPLE_PRODUCT, SAMPLE_CLASS)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.warning("could not create the sample product: %s", exc)
            return
        references = [str(p) for p in iter_image_files([sample_dir() / "reference"])]
        product = ProductInfo(pid, SAMPLE_PRODUCT, SAMPLE_CLASS)
        self.request_product.emit(product)
        self.request_sample_bank.emit(product, references)  # the worker knows whether its model is trained
        self.products.refresh()

    def _resume_product(self, stored: list[dict]) -> None:
        """Inspect the product of the last session again (Settings.last_product_id), when it still can."""
        row = next((p for p in stored if p["id"] == self.settings.last_product_id), None)
        if row is None:
            return
        if not can_inspect(row):
            self.statusBar().showMessage(f"Product '{row['name']}', inspected last time, has lost its memory bank: "
                                         "build it again in Products, or choose another product", 15000)
            return
        self.request_product.emit(product_info(row))

    # -- sources ---------------------------------------------------------------------------------
    # The GUI thread neither lists nor reads the files it is given: a source's thread expands them (and,
    # for a reopened folder, hashes each to skip what was inspected), and the batch's size is what it found.
    def open_paths(self, paths: list[Path]) -> None:
        self._expect_earlier(None)
        self.session.open_files(paths)
        self.tabs.setCurrentWidget(self.live)

    def open_folder(self, folder: Path, watch: bool = True) -> None:
        """Inspect every image in a folder, then watch it; files already inspected from it are skipped,
        so reopening a folder after a crash or restart resumes the batch. Returns at once: the folder
        is scanned on its source's thread, the Live line counting what it finds."""
        folder = Path(folder).resolve()
        skip = self._skip_inspected(f"folder:{folder}")
        self._expect_earlier(skip)
        self.session.open_folder(folder, watch=watch, skip=skip)
        self.tabs.setCurrentWidget(self.live)

    def _skip_inspected(self, source: str) -> AlreadyInspected | None:
        """A thread-safe test for the folder source: is this file's content already stored for source?"""
        if self.db is None:
            return None
        try:
            with self.db.Session() as s:
                done = frozenset(repository.processed_image_hashes(s, source))
        except Exception as exc:  # noqa: BLE001 - the boundary: inspect everything rather than nothing
            log.warning("cannot read which files were inspected already: %s", exc)
            return None
        return AlreadyInspected(source, done) if done else None

    def open_camera(self, spec: str) -> None:
        self._expect_earlier(None)
        self.session.open_camera(int(spec) if spec.isdigit() else spec)
        self.tabs.setCurrentWidget(self.live)

    def _batch_finished(self, stats: SessionStats) -> None:
        """Every image of a batch is done (an empty batch too, once its source has read it)."""
        self.last_batch = stats
        listed = "; the ones not inspected are listed in Live, each with the reason" if stats.failed else ""
        self.statusBar().showMessage(f"Done: {describe_progress(stats)}{listed}.", 30000)
        self.batch_done.emit(stats.inspected, stats.failed)

    # -- a reopened folder's earlier results --------------------------------------------------------
    def _expect_earlier(self, skip: AlreadyInspected | None) -> None:
        """A new source: its skipped files' earlier results are read once its scan has ended; any read
        for the source before is answered to no one."""
        self._awaiting_scan = skip
        self._earlier_request = None
        self.live.show_earlier_problems([])
        self.live.clear_failures()

    @property
    def reading_earlier(self) -> bool:
        """The earlier results of a reopened folder are being read (`earlier_shown` follows)."""
        return self._earlier_request is not None

    def _session_stats(self, stats: SessionStats) -> None:
        skip = self._awaiting_scan
        if skip is None or stats.source != skip.source:
            return
        if stats.state is SourceState.FAILED:
            self._awaiting_scan = None
        # STOPPED is not an end of this scan: opening the folder again stops its run before under the same name.
        if stats.state not in (SourceState.STREAMING, SourceState.FINISHED):
            return
        self._awaiting_scan = None  # the scan has ended: every file it skipped is known
        skipped = skip.skipped()
        if skipped and self.db is not None:
            self._earlier_after = self.live.strip.newest()
            self._earlier_request = self.earlier_reader.read(self.db, skipped, STRIP_CAPACITY)

    def _earlier_results(self, earlier: EarlierResults) -> None:
        if earlier.request != self._earlier_request:
            return  # for a source replaced since
        self._earlier_request = None
        self.live.show_earlier(earlier.outcomes, self._earlier_after)
        self.live.show_earlier_problems(earlier.problems)
        self.earlier_shown.emit(len(earlier.outcomes), len(earlier.problems))

    # -- worker reports --------------------------------------------------------------------------
    def _model_state(self, status: ModelStatus) -> None:
        self.model_status = status
        self.live.set_model_status(status)
        self.products.set_model_status(status)
        if status.state is ModelState.READY:
            self.model_label.setText(f"model: {status.message}")
        elif status.state is ModelState.LOADING:
            self.model_label.setText(f"model: {status.message}")
        else:
            self.model_label.setText("model: NOT LOADED — images wait until a model loads")
            self.statusBar().showMessage(f"The model could not be loaded: {status.message}")
            box = QMessageBox(QMessageBox.Icon.Warning, "Model not loaded",
                              status.message + "\n\nOpen Settings to choose another preset or weights folder.",
                              parent=self)
            box.setTextFormat(Qt.TextFormat.PlainText)
            box.open()
            self._model_box = box

    def _on_result(self, outcome: InspectionOutcome) -> None:
        self.live.add_outcome(outcome)
        if outcome.not_saved:  # shown, but not in the history (yet): say so where it stays visible
            self.statusBar().showMessage(f"not saved: {outcome.not_saved}")
        self.session.count(failed=False)
        self.history.schedule_refresh()

    def _inspection_failed(self, failure: InspectionFailure) -> None:
        log.warning("inspection failed: %s", failure.message)
        self.statusBar().showMessage(f"Could not inspect {failure.name}: {failure.message}", 15000)
        self.live.add_failure(failure)  # listed in Live with its reason, where it stays
        self.session.count(failed=True)

    def _chat_failed(self, inspection_id: int, message: str) -> None:
        self.statusBar().showMessage(f"The question was not answered: {message}", 15000)
        self.chat.fail(inspection_id, message)

    def _bank_ready(self, built: BankBuilt) -> None:
        self.products.bank_ready(built)
        self.statusBar().showMessage(f"Memory bank ready ({built.patches} patches); the product is inspected "
                                     f"in few-shot mode from the next image on.", 10000)

    def _product_changed(self, product: ProductInfo) -> None:
        self.products.set_active(product)
        if product.id and product.id != self.settings.last_product_id:
            self.settings = dataclasses.replace(self.settings, last_product_id=product.id)
            self._persist(self._without_overrides(self.settings))
        self.statusBar().showMessage(f"Inspecting product '{product.name}' ({ProductMode(product.mode).value})",
                                     8000)

    def _product_failed(self, message: str) -> None:
        self.statusBar().showMessage(f"The product was not switched: {message}", 15000)

    def _storage_message(self, message: str) -> None:
        log.warning("storage: %s", message)
        self.statusBar().showMessage(message, 15000)

    def _on_saved_later(self, outcome: InspectionOutcome) -> None:
        self.live.stored_later(outcome)
        self.history.schedule_refresh()

    # -- what the operator reads -----------------------------------------------------------------
    def _live_selection(self, outcome: InspectionOutcome) -> None:
        if self.tabs.currentWidget() is self.live:
            self._chat_about_outcome(outcome)

    def _chat_about_outcome(self, outcome: InspectionOutcome) -> None:
        messages: list[dict[str, str]] = []
        if outcome.inspection_id is not None and self.db is not None:
            try:
                with self.db.Session() as s:
                    messages = [{"role": m.role, "content": m.content}
                                for m in repository.get_conversation(s, outcome.inspection_id)]
            except Exception as exc:  # noqa: BLE001 - the boundary: the chat still works without history
                log.warning("reading the conversation failed: %s", exc)
        path = outcome.image_path or outcome.result.image or ""
        self.chat.set_inspection(outcome.inspection_id, path, outcome.result.answer, messages,
                                 outcome_label(outcome))

    def _tab_changed(self, _index: int) -> None:
        if self.tabs.currentWidget() is self.live and self.live.outcome is not None:
            self._chat_about_outcome(self.live.outcome)
        elif self.tabs.currentWidget() is self.history and self.history.current_row() is not None:
            row = self.history.current_row()
            self._show_history_item(row, self.history.current_messages())

    def _show_history_item(self, row, messages: list) -> None:
        path = str(self.db.files.path(row.image_path)) if self.db else ""
        label = f"#{row.id} {row.file_name or ''}".strip()
        self.chat.set_inspection(row.id, path, row.answer,
                                 [{"role": m.role, "content": m.content} for m in messages], label)

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

    def _activate_product(self, product: ProductInfo) -> None:
        self.request_product.emit(product)

    def _overlay_changed(self, mode: str, opacity: float, visible: bool) -> None:
        overlay = {"overlay_mode": mode, "overlay_opacity": opacity, "overlay_visible": visible}
        self.settings = dataclasses.replace(self.settings, **overlay)
        self._persist(self._without_overrides(self.settings))

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
        self.apply_settings(updated)

    def apply_settings(self, updated: Settings) -> None:
        """Ask the worker to take new settings; they are in force (and saved) only once it has."""
        if updated.model_key() != self.settings.model_key():
            self.statusBar().showMessage("Loading the new model; the current one keeps inspecting until it is "
                                         "ready …")
        self.request_settings.emit(updated)

    def _settings_applied(self, applied: Settings) -> None:
        # The window alone writes last_product_id: a product switched while the settings loaded stays.
        applied = dataclasses.replace(applied, last_product_id=self.settings.last_product_id)
        previous, self.settings = self.settings, applied
        self.live.alert_on_defective = applied.alert_on_defective
        if applied.storage_key() != previous.storage_key():
            old = self.db
            if self._open_db():
                if old is not None:
                    self._retired.append(old)
                self.request_database.emit(self.db)
                self.history.refresh()
                self.products.refresh()
            else:
                self.db = old  # keep storing where it worked
        self._persist(self._without_overrides(applied))
        if applied.model_key() != previous.model_key():
            self.statusBar().showMessage("The new settings are in force: the new model is loaded.", 8000)

    def _settings_rejected(self, kept: Settings, reason: str) -> None:
        self.statusBar().showMessage(f"The new settings were not applied: {reason}", 20000)
        box = QMessageBox(QMessageBox.Icon.Warning, "Settings not applied",
                          f"The new model could not be loaded, so nothing was changed: the previous model and "
                          f"settings are still in use.\n\n{reason}", parent=self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.open()
        self._settings_box = box

    def _without_overrides(self, settings: Settings) -> Settings:
        """`settings` as they should be saved: a command-line override the user left alone keeps the
        value from settings.json."""
        overridden = [f.name for f in dataclasses.fields(Settings)
                      if getattr(self._started_with, f.name) != getattr(self._saved, f.name)]
        kept = {k: getattr(self._saved, k) for k in overridden
                if getattr(settings, k) == getattr(self._started_with, k)}
        return dataclasses.replace(settings, **kept)

    def _persist(self, settings: Settings) -> None:
        self._saved = settings
        if self.persist_settings:
            try:
                save_settings(settings)
            except OSError as exc:
                self.statusBar().showMessage(f"Settings not saved: {exc}", 10000)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.session.stop()
        stop_worker(self.thread, self.worker)
        self.unsaved_on_close = self.worker.unsaved_summary()  # the worker has stopped: safe to read
        self.earlier_reader.wait()  # no read of the history left running when its database closes
        if self.unsaved_on_close:
            log.warning("%s", self.unsaved_on_close)
            if QApplication.platformName() != "offscreen":
                QMessageBox.warning(self, "Results not saved", self.unsaved_on_close)
        for db in (self.db, *self._retired):
            if db is not None:
                db.close()
        super().closeEvent(event)
