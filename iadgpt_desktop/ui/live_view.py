"""Live view: the image with its anomaly overlay, the verdict, where and what, and operator decisions.

What the operator reads is the *selected* result (`outcome`): with "Follow live" on, each new result
is selected as it comes; with it off (the operator stepped back, or is typing a question) new results
only join the strip of recent results, and the decision buttons, the chat and the detail keep acting
on the part on screen.

A reopened folder's images inspected before are not inspected again: their stored results, read back
from History, join the strip (`show_earlier`) and the newest goes on screen, model or no model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from iadgpt.imageio import IMAGE_SUFFIXES
from iadgpt_desktop.storage.wording import counted, describe_defect_types
from iadgpt_desktop.ui.history_model import local_time
from iadgpt_desktop.ui.image_view import ImageView
from iadgpt_desktop.ui.legend import OverlayLegend
from iadgpt_desktop.ui.overlay import render, to_qimage
from iadgpt_desktop.ui.recent_strip import RecentStrip, outcome_label
from iadgpt_desktop.ui.reference_panel import ReferencePanel, describe_reference
from iadgpt_desktop.workers.contract import InspectionFailure, ModelState, ModelStatus, Verdict
from iadgpt_desktop.workers.frames import SourceState
from iadgpt_desktop.workers.inference import InspectionOutcome
from iadgpt_desktop.workers.session import SessionStats

BANNER_STYLES = {
    Verdict.DEFECTIVE: "background:#c62828;color:white;",
    Verdict.GOOD: "background:#2e7d32;color:white;",
    "waiting": "background:#455a64;color:white;",
    "no model": "background:#9e9e9e;color:#212121;",
    "failed": "background:#e65100;color:white;",
}
BANNER_FONT = "font-size:26px;font-weight:bold;border-radius:6px;"
FAILURES_KEPT = 200  # images that could not be inspected, listed for this source (the count goes on)
FAILURE_ROWS = 4  # rows of that list in view before it scrolls
PROBLEMS_LISTED = 3  # earlier results that cannot be shown in full, named on the line (the tooltip has all)
DECISIONS = {"confirmed": "Confirm", "overridden_good": "Override: good", "overridden_defective": "Override: defective"}
# The override a verdict can get: the opposite verdict only.
OVERRIDE_FOR = {Verdict.DEFECTIVE: "overridden_good", Verdict.GOOD: "overridden_defective"}


def _plain(label: QLabel) -> QLabel:
    """User and model text is shown as typed: no markup, no links, no images loaded."""
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class LiveView(QWidget):
    open_files = Signal(list)
    open_folder = Signal(str)
    open_camera = Signal(str)
    pause_requested = Signal()
    resume_requested = Signal()
    stop_requested = Signal()
    decision = Signal(int, str)  # inspection id, decision
    overlay_changed = Signal(str, float, bool)  # mode, opacity, visible
    selection_changed = Signal(object)  # InspectionOutcome the operator now reads

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.outcome: InspectionOutcome | None = None
        self._live_frame: np.ndarray | None = None
        self._decisions: dict[int, str] = {}  # inspection id -> decision recorded in this session
        self._newer = 0  # results that came while not following
        self.failure: InspectionFailure | None = None  # on screen instead of a result: an image not inspected
        self._newest_failure: InspectionFailure | None = None  # the newest event was this failure
        self._failures: list[InspectionFailure] = []  # this source's, oldest first (FAILURES_KEPT at most)
        self._failed_count = 0
        self._stats: SessionStats | None = None
        self._model_ready = False
        self._model_status: ModelStatus | None = None
        self.alert_on_defective = False  # Settings > Station: beep and flash on a new defective part
        self.alerts = 0
        self._flashes_left = 0
        self._flash_timer = QTimer(self, interval=180)
        self._flash_timer.timeout.connect(self._flash)
        self.view = ImageView("Open files, a folder or a camera to start inspecting")
        self.reference = ReferencePanel()  # few-shot: the nearest good reference, beside the part
        self.reference.setVisible(False)
        self.part_title = _plain(QLabel(""))  # over the part while the reference is beside it: both captioned
        self.part_title.setStyleSheet("font-weight:bold;")
        self.part_title.setVisible(False)
        part = QWidget()
        part_layout = QVBoxLayout(part)
        part_layout.setContentsMargins(0, 0, 0, 0)
        part_layout.addWidget(self.part_title)
        part_layout.addWidget(self.view, 1)
        self.images = QSplitter(Qt.Orientation.Horizontal)
        self.images.addWidget(part)
        self.images.addWidget(self.reference)
        self.images.setChildrenCollapsible(False)
        self.images.setSizes([1, 1])

        bar = QHBoxLayout()
        for text, slot in (("Open files…", self._choose_files), ("Open folder…", self._choose_folder),
                           ("Camera…", self._choose_camera)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            bar.addWidget(b)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setEnabled(False)
        self.pause_button.toggled.connect(self._pause_toggled)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested.emit)
        bar.addWidget(self.pause_button)
        bar.addWidget(self.stop_button)
        self.source_label = _plain(QLabel("No source"))
        self.source_label.setWordWrap(True)
        bar.addWidget(self.source_label, 1)
        self.failures_button = QToolButton()  # beside the line that counts them: the way to the list
        self.failures_button.setCheckable(True)
        self.failures_button.setVisible(False)
        self.failures_button.toggled.connect(self._failures_toggled)
        bar.addWidget(self.failures_button)
        # Earlier results of a reopened folder that cannot be shown in full, each naming its file.
        self.earlier_problems = _plain(QLabel(""))
        self.earlier_problems.setWordWrap(True)
        self.earlier_problems.setStyleSheet("background:#fdecea;color:#b71c1c;padding:4px;border-radius:4px;")
        self.earlier_problems.setVisible(False)
        # The images of this source that could not be inspected, each with its reason; one picked is shown.
        self.failures_title = QLabel("")
        self.failures_title.setStyleSheet("color:#b71c1c;font-weight:bold;")
        self.failure_list = QListWidget()
        self.failure_list.setStyleSheet("QListWidget{background:#fdecea;color:#b71c1c;}")
        self.failure_list.setWordWrap(True)
        self.failure_list.itemClicked.connect(self._failure_picked)
        rows = self.failure_list.fontMetrics().height() * FAILURE_ROWS + 8
        self.failure_list.setMaximumHeight(rows)
        self.failures_panel = QWidget()
        failures_layout = QVBoxLayout(self.failures_panel)
        failures_layout.setContentsMargins(0, 0, 0, 0)
        failures_layout.setSpacing(2)
        failures_layout.addWidget(self.failures_title)
        failures_layout.addWidget(self.failure_list)
        self.failures_panel.setVisible(False)

        # Under the image: the legend and zoom, then the recent results with previous/next.
        self.legend = OverlayLegend()
        self.fit_button = QToolButton(text="Fit")
        self.fit_button.clicked.connect(self.view.fit)
        zoom_in = QToolButton(text="+", toolTip="Zoom in (wheel up)")
        zoom_in.clicked.connect(self.view.zoom_in)
        zoom_out = QToolButton(text="−", toolTip="Zoom out (wheel down)")
        zoom_out.clicked.connect(self.view.zoom_out)
        self.reference_toggle = QCheckBox("Nearest reference")
        self.reference_toggle.setToolTip("In few-shot mode, show the good reference image most like the part "
                                         "beside it")
        self.reference_toggle.setChecked(True)
        self.reference_toggle.toggled.connect(lambda _on: self._show_reference())
        under = QHBoxLayout()
        under.addWidget(self.legend, 1)
        under.addWidget(self.reference_toggle)
        under.addWidget(zoom_out)
        under.addWidget(zoom_in)
        under.addWidget(self.fit_button)

        self.strip = RecentStrip()
        self.strip.picked.connect(self._picked)
        self.strip.failure_picked.connect(self._strip_failure_picked)
        self.previous_button = QPushButton("◀")
        self.previous_button.clicked.connect(self.show_previous)
        self.next_button = QPushButton("▶")
        self.next_button.clicked.connect(self.show_next)
        self.follow = QCheckBox("Follow live")
        self.follow.setChecked(True)
        self.follow.toggled.connect(self._follow_toggled)
        self.newer_label = QLabel("")
        self.newer_label.setStyleSheet("color:#1565c0;font-weight:bold;")
        nav = QVBoxLayout()
        nav.addWidget(self.follow)
        arrows = QHBoxLayout()
        arrows.addWidget(self.previous_button)
        arrows.addWidget(self.next_button)
        nav.addLayout(arrows)
        nav.addWidget(self.newer_label)
        strip_row = QHBoxLayout()
        strip_row.addWidget(self.strip, 1)
        strip_row.addLayout(nav)

        self.banner = QLabel("WAITING")
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.banner.setMinimumHeight(56)
        self.banner.setStyleSheet(BANNER_STYLES["waiting"] + BANNER_FONT)
        self.file_label = _plain(QLabel(""))
        self.file_label.setWordWrap(True)
        self.file_label.setStyleSheet("font-weight:bold;")
        self.history_note = _plain(QLabel(""))  # a result read back from History: when, and what is gone
        self.history_note.setWordWrap(True)
        self.history_note.setVisible(False)
        self.answer = _plain(QLabel(""))
        self.answer.setWordWrap(True)
        details = QFormLayout()
        details.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.score = QLabel("–")
        self.position = _plain(QLabel("–"))
        self.position.setWordWrap(True)
        self.types = _plain(QLabel("–"))
        self.types.setWordWrap(True)
        self.timing = QLabel("–")
        self.mode = _plain(QLabel("–"))
        self.mode.setWordWrap(True)
        self.reference_name = _plain(QLabel("–"))
        self.reference_name.setWordWrap(True)
        self.counts = _plain(QLabel("–"))
        self.counts.setWordWrap(True)
        for name, label in (("Score", self.score), ("Position", self.position), ("Likely defect", self.types),
                            ("Time", self.timing), ("Mode", self.mode), ("Reference", self.reference_name),
                            ("Stream", self.counts)):
            details.addRow(name + ":", label)

        overlay = QGroupBox("Overlay")
        ol = QFormLayout(overlay)
        self.overlay_visible = QCheckBox("Show anomaly map")
        self.overlay_visible.setChecked(True)
        self.overlay_mode = QComboBox()
        self.overlay_mode.addItem("Heat map", "heatmap")
        self.overlay_mode.addItem("Outline", "outline")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        ol.addRow(self.overlay_visible)
        ol.addRow("Style:", self.overlay_mode)
        ol.addRow("Opacity:", self.opacity)
        for w in (self.overlay_visible, self.overlay_mode, self.opacity):
            sig = getattr(w, "toggled", None) or getattr(w, "currentIndexChanged", None) or w.valueChanged
            sig.connect(self._overlay_changed)

        decide = QGroupBox("Operator decision")
        dl = QVBoxLayout(decide)
        self.confirm_button = QPushButton("Confirm")
        self.confirm_button.clicked.connect(lambda: self._decide("confirmed"))
        self.override_button = QPushButton("Override")
        self.override_button.clicked.connect(self.override)
        for b in (self.confirm_button, self.override_button):
            b.setEnabled(False)
            dl.addWidget(b)
        self.decision_label = _plain(QLabel(""))
        self.decision_label.setWordWrap(True)
        dl.addWidget(self.decision_label)

        side = QVBoxLayout()
        side.addWidget(self.banner)
        side.addWidget(self.file_label)
        side.addWidget(self.history_note)
        side.addWidget(self.answer)
        side.addLayout(details)
        side.addWidget(decide)
        side.addWidget(overlay)
        side.addStretch(1)
        self.side_panel = QWidget()
        self.side_panel.setLayout(side)
        scroll = QScrollArea()  # on a short screen the panel scrolls rather than cutting rows off
        scroll.setWidget(self.side_panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedWidth(340)

        left = QVBoxLayout()
        left.addWidget(self.images, 1)
        left.addLayout(under)
        left.addLayout(strip_row)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addWidget(scroll)
        root = QVBoxLayout(self)
        root.addLayout(bar)
        root.addWidget(self.earlier_problems)
        root.addWidget(self.failures_panel)
        root.addLayout(body, 1)
        self._update_navigation()

    # -- user intents --------------------------------------------------------------------------
    def _choose_files(self) -> None:
        pattern = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ")"
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", "", pattern)
        if paths:
            self.open_files.emit(paths)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Inspect a folder (and watch it for new images)")
        if folder:
            self.open_folder.emit(folder)

    def _choose_camera(self) -> None:
        spec, ok = QInputDialog.getText(self, "Camera", "Camera index (0, 1, …), video file, or stream URL:",
                                        text="0")
        if ok and spec.strip():
            self.open_camera.emit(spec.strip())

    def _pause_toggled(self, on: bool) -> None:
        self.pause_button.setText("Resume" if on else "Pause")
        (self.pause_requested if on else self.resume_requested).emit()

    def toggle_pause(self) -> None:
        if self.pause_button.isEnabled():
            self.pause_button.toggle()

    def confirm(self) -> None:
        if self.confirm_button.isEnabled():
            self._decide("confirmed")

    def override(self) -> None:
        if self.outcome is not None and self.override_button.isEnabled():
            self._decide(OVERRIDE_FOR[self.outcome.verdict])

    def _decide(self, key: str) -> None:
        outcome = self.outcome
        if outcome is None or outcome.inspection_id is None:
            return
        self._decisions[outcome.inspection_id] = key
        self.decision.emit(outcome.inspection_id, key)
        self._show_decision()

    def _overlay_changed(self, *_args) -> None:
        self.overlay_changed.emit(self.overlay_mode.currentData(), self.opacity.value() / 100,
                                  self.overlay_visible.isChecked())
        self.legend.set_mode(self.overlay_mode.currentData(), self.overlay_visible.isChecked())
        self._redraw()

    # -- selection -----------------------------------------------------------------------------
    def add_outcome(self, outcome: InspectionOutcome) -> None:
        """A new result from the worker: into the strip; on screen only when following live."""
        self.strip.add(outcome)
        self._newest_failure = None
        self._arrived(lambda: self.show_outcome(outcome))
        if self.alert_on_defective and outcome.verdict is Verdict.DEFECTIVE:
            self._alert()

    # -- images that could not be inspected ----------------------------------------------------------
    def add_failure(self, failure: InspectionFailure) -> None:
        """An image the worker could not inspect: into the list of this source's failures; on screen, in
        place of the previous part's verdict, when following live (the newest event is this failure)."""
        self._failed_count += 1
        self._failures.append(failure)
        item = QListWidgetItem(f"✗ {failure.name} — {failure_reason(failure)}")
        item.setToolTip(failure.message)
        self.failure_list.addItem(item)
        while len(self._failures) > FAILURES_KEPT:
            self._failures.pop(0)
            self.failure_list.takeItem(0)
        self.failure_list.scrollToBottom()
        self.strip.add_failure(failure)
        if self._failed_count == 1:
            self.failures_button.setChecked(True)  # the first one opens the list: the reasons stay in view
        self._show_failures()
        self._newest_failure = failure
        self._arrived(lambda: self.show_failure(failure))

    def _arrived(self, show: Callable[[], None], count: int = 1) -> None:
        """Something newer came (`count` results, or a failure): `show` it when following live or when
        nothing is on screen yet; otherwise count it as newer for the operator reading an earlier one."""
        if self.follow.isChecked() or self._nothing_shown():
            show()
        else:
            self._newer += count
        self._update_navigation()

    def clear_failures(self) -> None:
        """A new source: its failures are listed from none (one on screen stays until the next result)."""
        self._failures.clear()
        self._failed_count = 0
        self._newest_failure = None
        self.failure_list.clear()
        self.failures_button.setChecked(False)
        self._show_failures()
        self._update_navigation()

    def failures(self) -> list[InspectionFailure]:
        """This source's images that could not be inspected, oldest first (the newest FAILURES_KEPT)."""
        return list(self._failures)

    def _show_failures(self) -> None:
        n = self._failed_count
        shown = self.failures_button.isChecked()
        self.failures_button.setVisible(bool(n))
        self.failures_button.setText("Hide the list" if shown else f"Show the {n} not inspected")
        self.failures_button.setToolTip("The images that could not be inspected, each with the reason")
        listed = f" (the newest {FAILURES_KEPT} listed)" if n > FAILURES_KEPT else ""
        self.failures_title.setText(f"{counted(n, 'image')} could not be inspected{listed}: click one to read it")
        self.failures_panel.setVisible(bool(n) and shown)

    def _failures_toggled(self, _on: bool) -> None:
        self._show_failures()

    def _failure_picked(self, item: QListWidgetItem) -> None:
        self._strip_failure_picked(self._failures[self.failure_list.row(item)])

    def _strip_failure_picked(self, failure: InspectionFailure) -> None:
        self.set_following(failure is self._newest_failure)
        self.show_failure(failure)

    def show_failure(self, failure: InspectionFailure) -> None:
        """Put an image that could not be inspected on screen: its name and why, no verdict, nothing to
        decide on (the previous part's picture and verdict are not shown as if they were its)."""
        self.outcome = None
        self.failure = failure
        self._live_frame = None
        self.file_label.setText(failure.name)
        self.file_label.setToolTip(failure.path or failure.name)
        self.answer.setText(failure.message)
        self.history_note.setVisible(False)
        for label in (self.score, self.position, self.types, self.timing, self.mode, self.reference_name):
            label.setText("–")
            label.setToolTip("")
        self.confirm_button.setText("Confirm")  # no verdict to confirm or override
        self.override_button.setText("Override")
        self.strip.mark(failure)
        row = next((i for i, f in enumerate(self._failures) if f is failure), -1)
        self.failure_list.blockSignals(True)
        self.failure_list.setCurrentRow(row)
        self.failure_list.blockSignals(False)
        self.view.set_image(None)
        self.view.set_placeholder(f"Could not inspect {failure.name}:\n{failure_reason(failure)}")
        self._show_model_state()
        self._show_decision()
        self._show_reference()
        self._update_navigation()

    def _alert(self) -> None:
        """A defective part: beep and flash the banner (even when reading an earlier part)."""
        self.alerts += 1
        QApplication.beep()
        self._flashes_left = 6
        self._flash_timer.start()

    def _flash(self) -> None:
        self._flashes_left -= 1
        bright = self._flashes_left % 2 == 1
        style = "background:#ffeb3b;color:#b71c1c;" if bright else BANNER_STYLES[Verdict.DEFECTIVE]
        if self._flashes_left <= 0:
            self._flash_timer.stop()
            self._show_model_state()  # back to the banner of the part on screen
            return
        self.banner.setStyleSheet(style + BANNER_FONT)

    def stored_later(self, outcome: InspectionOutcome) -> None:
        """A result that could not be stored at first is stored now: its decision buttons work."""
        self.strip.replace(outcome)
        if outcome is self.outcome:
            self.show_outcome(outcome)

    def show_earlier(self, outcomes: list[InspectionOutcome], after: InspectionOutcome | None) -> None:
        """Stored results read back from History (oldest first): the images a reopened folder skipped.

        They join the strip after `after`, the newest result when they were asked for, so that results
        inspected since stay the newest; one the strip holds already is not added twice. The newest of
        them goes on screen when nothing newer came meanwhile and the view follows live. No alert: they
        are not new parts.
        """
        known = {o.inspection_id for o in self.strip.outcomes()}
        fresh = [o for o in outcomes if o.inspection_id not in known]
        if not fresh:
            return
        for outcome in fresh:
            decided = outcome.from_history.decision if outcome.from_history is not None else None
            if outcome.inspection_id is not None and decided in DECISIONS:
                self._decisions.setdefault(outcome.inspection_id, decided)
        self.strip.insert_after(after, fresh)
        if self.strip.newest() is fresh[-1] and self._newest_failure is None:
            self._arrived(lambda: self.show_outcome(fresh[-1]), len(fresh))
        else:
            self._update_navigation()

    def show_earlier_problems(self, problems: list[str]) -> None:
        """Say which earlier results cannot be shown in full, each by its file; none hides the line."""
        listed = "; ".join(problems[:PROBLEMS_LISTED])
        more = len(problems) - PROBLEMS_LISTED
        if more > 0:
            listed += f"; and {more} more (hover to see them all)"
        self.earlier_problems.setText(f"Not all earlier results can be shown in full: {listed}" if problems else "")
        self.earlier_problems.setToolTip("\n".join(problems))
        self.earlier_problems.setVisible(bool(problems))

    def set_following(self, on: bool) -> None:
        self.follow.setChecked(on)

    def _nothing_shown(self) -> bool:
        return self.outcome is None and self.failure is None

    def _follow_toggled(self, on: bool) -> None:
        if on:
            newest = self.strip.newest()
            if self._newest_failure is not None:  # the newest thing that happened: an image not inspected
                if self._newest_failure is not self.failure:
                    self.show_failure(self._newest_failure)
            elif newest is not None and newest is not self.outcome:
                self.show_outcome(newest)
            self._newer = 0
        self._update_navigation()

    def _is_newest(self, outcome: InspectionOutcome) -> bool:
        """The newest thing that happened (following live shows it): not when a failure came after it."""
        return outcome is self.strip.newest() and self._newest_failure is None

    def _picked(self, outcome: InspectionOutcome) -> None:
        self.set_following(self._is_newest(outcome))
        self.show_outcome(outcome)

    def show_previous(self) -> None:
        # From a failure on screen, back to the newest result.
        target = self.strip.newest() if self.failure is not None else self.strip.neighbour(self.outcome, -1)
        if target is not None:
            self.set_following(False)
            self.show_outcome(target)

    def show_next(self) -> None:
        if self.failure is not None:
            return
        if self._newest_failure is not None and self.outcome is self.strip.newest():
            self.set_following(True)  # the failure after the newest result
            return
        target = self.strip.neighbour(self.outcome, +1)
        if target is not None:
            self.show_outcome(target)
            if target is self.strip.newest():
                self.set_following(True)

    def _update_navigation(self) -> None:
        if self.failure is not None:
            self.previous_button.setEnabled(self.strip.newest() is not None)
            self.next_button.setEnabled(False)
        else:
            self.previous_button.setEnabled(self.strip.neighbour(self.outcome, -1) is not None)
            failure_next = (self._newest_failure is not None and self.outcome is not None
                            and self.outcome is self.strip.newest())
            self.next_button.setEnabled(self.strip.neighbour(self.outcome, +1) is not None or failure_next)
        following = self.follow.isChecked()
        self.newer_label.setText("" if following or not self._newer else f"{self._newer} newer")
        self.newer_label.setToolTip("Results that came while you were reading this one; tick Follow live "
                                    "to jump to the newest")

    # -- updates from the session and worker -----------------------------------------------------
    def show_outcome(self, outcome: InspectionOutcome) -> None:
        """Put a result on screen: what the operator reads, decides on and asks about."""
        self.outcome = outcome
        self.failure = None
        self.failure_list.clearSelection()
        r = outcome.result
        verdict = outcome.verdict
        self.file_label.setText(outcome_label(outcome))
        self.file_label.setToolTip(r.image or outcome.source)
        self.answer.setText(r.answer)
        self._show_history_note(outcome)
        self.score.setText(f"{r.score:.3f}  (top 1 %: {r.score_top1:.3f}, P(yes) {r.p_yes:.2f})")
        self.position.setText(r.position or "–")
        self.types.setText(describe_defect_types(r.defect_types) or "–")
        self.timing.setText(f"{r.latency_ms:.0f} ms")
        self.mode.setText(f"{r.mode} · {r.model_id}")
        self.reference_name.setText(describe_reference(outcome))
        nearest = outcome.nearest_reference
        self.reference_name.setToolTip((nearest.path or "") if nearest is not None else "")
        self.confirm_button.setText(f"Confirm: {verdict.value}")
        other = Verdict.GOOD if verdict is Verdict.DEFECTIVE else Verdict.DEFECTIVE
        self.override_button.setText(f"Override: {other.value}")
        self._live_frame = None
        self.strip.mark(outcome)
        self._show_model_state()
        self._show_decision()
        self._update_navigation()
        self._redraw()
        self._show_reference()
        self.selection_changed.emit(outcome)

    def _show_history_note(self, outcome: InspectionOutcome) -> None:
        earlier = outcome.from_history
        self.history_note.setVisible(earlier is not None)
        if earlier is None:
            self.history_note.setText("")
            return
        text = f"From History: inspected {local_time(earlier.inspected_at)}"
        self.history_note.setText(text + (f". {earlier.problem}" if earlier.problem else ""))
        self.history_note.setStyleSheet("color:#c62828;" if earlier.problem else "color:#1565c0;")

    def _show_reference(self) -> None:
        """The nearest good reference beside the part, when there is one and the operator wants it."""
        has_one = self.reference.show_outcome(self.outcome) if self.reference_toggle.isChecked() else False
        appears = has_one and self.reference.isHidden()
        self.reference.setVisible(has_one)
        self.part_title.setVisible(has_one)
        self.part_title.setText(f"Inspected: {outcome_label(self.outcome)}" if has_one else "")
        if appears:  # side by side at the same size, however the splitter was left (sizes count once shown)
            half = max(1, self.images.width() // 2)
            self.images.setSizes([half, half])
        self.reference_toggle.setEnabled(self.outcome is not None and self.outcome.nearest_reference is not None)

    def _show_decision(self) -> None:
        outcome = self.outcome
        stored = outcome is not None and outcome.inspection_id is not None
        # A result from History is decided on as it is stored; one just inspected needs the model there.
        usable = stored and (self._model_ready or outcome.from_history is not None)
        for b in (self.confirm_button, self.override_button):
            b.setEnabled(usable)
        if outcome is None:
            self.decision_label.setText("")
        elif not stored:
            self.decision_label.setText("Not saved yet: see the status bar")
        elif outcome.inspection_id in self._decisions:
            self.decision_label.setText(f"Recorded for {outcome_label(outcome)}: "
                                        f"{DECISIONS[self._decisions[outcome.inspection_id]]}")
        else:
            self.decision_label.setText("")

    def set_model_status(self, status: ModelStatus) -> None:
        """No model (loading, or it failed): the shown result is greyed and cannot be decided on."""
        self._model_ready = status.state is ModelState.READY
        self._model_status = status
        self._show_model_state()
        self._show_decision()
        if self._stats is not None:  # the source line says whether images wait for a model
            self._show_source_line(self._stats)

    def _show_model_state(self) -> None:
        self.side_panel.setEnabled(True)
        if self.failure is not None:
            self.banner.setText("NOT INSPECTED")
            self.banner.setStyleSheet(BANNER_STYLES["failed"] + BANNER_FONT)
            self.banner.setToolTip(self.failure.message)
            self.view.setEnabled(True)
            return
        status = self._model_status
        earlier = self.outcome is not None and self.outcome.from_history is not None
        if self._model_ready or earlier:  # a stored result from History needs no model to be read
            verdict = self.outcome.verdict if self.outcome is not None else None
            self.banner.setText({Verdict.DEFECTIVE: "DEFECTIVE", Verdict.GOOD: "GOOD"}.get(verdict, "WAITING"))
            self.banner.setStyleSheet(BANNER_STYLES[verdict or "waiting"] + BANNER_FONT)
            self.banner.setToolTip("" if self._model_ready else "The stored verdict, from History; the model is "
                                   "not loaded yet (see the status bar)")
            self.view.setEnabled(True)
            self.reference.setEnabled(True)
            return
        loading = status is not None and status.state is ModelState.LOADING
        self.banner.setText("LOADING MODEL…" if loading else "NO MODEL")
        self.banner.setStyleSheet(BANNER_STYLES["no model"] + BANNER_FONT)
        self.banner.setToolTip("" if status is None else status.message)
        self.view.setEnabled(False)  # the previous part's picture is greyed: it is not a verdict on anything new
        self.reference.setEnabled(False)

    def show_frame(self, rgb: np.ndarray) -> None:
        """A newer camera frame than the last inspected one: draw it with the latest map over it."""
        if not self.follow.isChecked():
            return  # the operator is reading an earlier part
        self._live_frame = rgb
        self._redraw()

    def show_stats(self, stats: SessionStats) -> None:
        running = stats.state not in (SourceState.FINISHED, SourceState.STOPPED, SourceState.FAILED)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        if not running and self.pause_button.isChecked():
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.setText("Pause")
            self.pause_button.blockSignals(False)
        self._stats = stats
        self._show_source_line(stats)
        text = f"{stats.captured} in, {stats.dropped} dropped"
        if stats.fps:
            text += f", {stats.fps:.1f} fps"
        if stats.waiting:
            text += f", {stats.waiting} waiting"
        self.counts.setText(text)

    def _show_source_line(self, stats: SessionStats) -> None:
        self.source_label.setText(describe_stats(stats, model_ready=self._model_ready))
        self.source_label.setToolTip("\n\n".join(filter(None, (stats.source, describe_skipped(stats)))))
        problem = stats.state in (SourceState.RECONNECTING, SourceState.FAILED)
        self.source_label.setStyleSheet("color:#c62828;" if problem else ("color:#e65100;" if stats.paused else ""))

    def _redraw(self) -> None:
        base = self._live_frame if self._live_frame is not None else (self.outcome.image if self.outcome else None)
        if base is None:
            earlier = self.outcome.from_history if self.outcome is not None else None
            if earlier is not None:  # a stored result whose image is gone: say so in its place
                self.view.set_placeholder(earlier.problem or "The stored image cannot be shown")
                self.view.set_image(None)
            return
        amap = self.outcome.result.anomaly_map if self.outcome else None
        if amap is not None and amap.shape != base.shape[:2]:
            amap = None if self._live_frame is None else amap  # render() resizes a live frame's map
        rgb = render(base, amap, mode=self.overlay_mode.currentData(), opacity=self.opacity.value() / 100,
                     visible=self.overlay_visible.isChecked())
        self.view.set_image(to_qimage(rgb))


# The way forward when a reopened folder skips what was inspected before: files opened one by one are
# never skipped (MainWindow.open_paths), so choosing them inspects them again.
INSPECT_AGAIN = "Open files… inspects them again"


def failure_reason(failure: InspectionFailure) -> str:
    """Why an image could not be inspected, without the path its sentence starts with (its name is shown
    beside it, the whole sentence in the tooltip)."""
    if failure.path:
        for prefix in (f"cannot read image {failure.path}: ", f"{failure.path}: "):
            if failure.message.startswith(prefix):
                return failure.message[len(prefix):]
    return failure.message


def none_new(stats: SessionStats) -> bool:
    """The source has read all it was given and every image was inspected before: nothing to do."""
    read = stats.state is SourceState.FINISHED or (stats.watching and stats.state is SourceState.STREAMING)
    return read and bool(stats.skipped) and not stats.total and not stats.done and not stats.waiting


def describe_progress(stats: SessionStats) -> str:
    """How far a batch is: "11 of 40 inspected, 1 could not be read, 9 skipped (already inspected)".
    A file that could not be read is not counted as inspected."""
    if stats.source.startswith("camera"):
        return f"{stats.inspected} frames inspected"
    if none_new(stats):
        where = " in this folder" if stats.source.startswith("folder") else ""
        return f"{counted(stats.skipped, 'image')} already inspected{where}, none new"
    n = stats.total if stats.total is not None else stats.done + stats.waiting
    progress = f"{stats.inspected} of {n} inspected" if n else "nothing inspected yet"
    if stats.failed:
        progress += f", {stats.failed} could not be read"
    if stats.skipped:
        progress += f", {stats.skipped} skipped (already inspected)"
    return progress


def describe_scan(stats: SessionStats) -> str:
    """A folder's first scan while it runs: "scanning… 1200 found, 300 already inspected (1500 of 5000
    checked)"; nothing is inspected before it ends. "" once it has ended."""
    scan = stats.scan
    if scan is None:
        return ""
    text = f"scanning… {scan.found} found"
    if stats.skipped:
        text += f", {stats.skipped} already inspected"
    if scan.listed is not None and scan.checked < scan.listed:
        text += f" ({scan.checked} of {scan.listed} checked)"
    return text


def describe_skipped(stats: SessionStats) -> str:
    """Why images were skipped and how to inspect them anyway (the status line's tooltip); "" if none."""
    if not stats.skipped:
        return ""
    return (f"{counted(stats.skipped, 'image')} already inspected (see History) and skipped, so that a batch opened "
            "again resumes where it stopped. To inspect them again, choose them with Open files…")


def describe_stats(stats: SessionStats, *, model_ready: bool = True) -> str:
    """The one line that says where a source is: "folder /x — 12 of 40 inspected, 28 waiting"."""
    kind, _, where = stats.source.partition(":")
    if kind == "folder" and where:  # the folder's last two parts; the tooltip has the whole path
        parts = Path(where).parts
        where = str(Path(*parts[-2:])) if len(parts) > 2 else where
        where = ("…/" if len(parts) > 2 else "") + where
    name = f"{kind} {where}".strip()
    progress = describe_progress(stats)
    if stats.state is SourceState.STOPPED:
        return f"{name} — stopped after {progress}"
    if stats.state is SourceState.FAILED:
        return f"{name} — failed after {progress}: {stats.message}"
    if stats.scan is not None:
        paused = "; PAUSED: press Resume to inspect what it finds" if stats.paused else ""
        return f"{name} — {describe_scan(stats)}{paused}"
    if none_new(stats):
        watching = "; watching for new images" if stats.watching else ""
        return f"{name} — done: {progress}{watching} ({INSPECT_AGAIN})"
    if stats.state is SourceState.FINISHED and stats.waiting == 0:
        if not stats.total and not stats.done:
            return f"{name} — done: no images found"
        return f"{name} — done: {progress}"
    if stats.paused:
        return f"{name} — PAUSED at {progress}; press Resume to go on"
    if not model_ready and stats.waiting:
        return f"{name} — {stats.waiting} image(s) waiting: no model is loaded (see the status bar)"
    if stats.watching and stats.waiting == 0 and stats.done:
        return f"{name} — done: {progress}; watching for new images"
    state = stats.state.value
    text = f"{name} — {state}: {progress}"
    if stats.waiting:
        text += f", {stats.waiting} waiting"
    if stats.message:
        text += f" ({stats.message})"
    return text
