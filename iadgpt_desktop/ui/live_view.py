"""Live view: the image with its anomaly overlay, the verdict, where and what, and operator decisions."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from iadgpt.imageio import IMAGE_SUFFIXES
from iadgpt_desktop.ui.image_view import ImageView
from iadgpt_desktop.ui.overlay import render, to_qimage
from iadgpt_desktop.workers.inference import InspectionOutcome

BANNER_STYLES = {
    "defective": "background:#c62828;color:white;",
    "good": "background:#2e7d32;color:white;",
    "waiting": "background:#455a64;color:white;",
}
DECISIONS = {"confirmed": "Confirm", "overridden_good": "Override: good", "overridden_defective": "Override: defective"}


class LiveView(QWidget):
    open_files = Signal(list)
    open_folder = Signal(str)
    open_camera = Signal(str)
    pause_requested = Signal()
    resume_requested = Signal()
    stop_requested = Signal()
    decision = Signal(int, str)  # inspection id, decision
    overlay_changed = Signal(str, float, bool)  # mode, opacity, visible

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.outcome: InspectionOutcome | None = None
        self._live_frame: np.ndarray | None = None
        self.view = ImageView("Open files, a folder or a camera to start inspecting")

        bar = QHBoxLayout()
        for text, slot in (("Open files…", self._choose_files), ("Open folder…", self._choose_folder),
                           ("Camera…", self._choose_camera)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            bar.addWidget(b)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(
            lambda on: self.pause_requested.emit() if on else self.resume_requested.emit())
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_requested.emit)
        bar.addWidget(self.pause_button)
        bar.addWidget(self.stop_button)
        bar.addStretch(1)
        self.source_label = QLabel("No source")
        bar.addWidget(self.source_label)

        self.banner = QLabel("WAITING")
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.banner.setMinimumHeight(64)
        self.banner.setStyleSheet(BANNER_STYLES["waiting"] + "font-size:26px;font-weight:bold;border-radius:6px;")
        self.answer = QLabel("")
        self.answer.setWordWrap(True)
        details = QFormLayout()
        self.score = QLabel("–")
        self.position = QLabel("–")
        self.types = QLabel("–")
        self.types.setWordWrap(True)
        # A wrapped label in a form row is not given its second line's height by QFormLayout; reserve it.
        self.types.setMinimumHeight(2 * self.types.fontMetrics().lineSpacing())
        self.timing = QLabel("–")
        self.mode = QLabel("–")
        self.counts = QLabel("–")
        for name, label in (("Score", self.score), ("Position", self.position), ("Likely defect", self.types),
                            ("Time", self.timing), ("Mode", self.mode), ("Stream", self.counts)):
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
        self.decision_buttons = {}
        for key, text in DECISIONS.items():
            b = QPushButton(text)
            b.setEnabled(False)
            b.clicked.connect(lambda _=False, k=key: self._decide(k))
            dl.addWidget(b)
            self.decision_buttons[key] = b
        self.decision_label = QLabel("")
        dl.addWidget(self.decision_label)

        side = QVBoxLayout()
        side.addWidget(self.banner)
        side.addWidget(self.answer)
        side.addLayout(details)
        side.addWidget(overlay)
        side.addWidget(decide)
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        side_widget.setFixedWidth(330)

        body = QHBoxLayout()
        body.addWidget(self.view, 1)
        body.addWidget(side_widget)
        root = QVBoxLayout(self)
        root.addLayout(bar)
        root.addLayout(body, 1)

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

    def _decide(self, key: str) -> None:
        if self.outcome and self.outcome.inspection_id is not None:
            self.decision.emit(self.outcome.inspection_id, key)
            self.decision_label.setText(f"Recorded: {DECISIONS[key]}")

    def _overlay_changed(self, *_args) -> None:
        self.overlay_changed.emit(self.overlay_mode.currentData(), self.opacity.value() / 100,
                                  self.overlay_visible.isChecked())
        self._redraw()

    # -- updates from the session and worker -----------------------------------------------------
    def show_outcome(self, outcome: InspectionOutcome) -> None:
        self.outcome = outcome
        r = outcome.result
        self.banner.setText("DEFECTIVE" if r.verdict == "defective" else "GOOD")
        self.banner.setStyleSheet(BANNER_STYLES[r.verdict] + "font-size:26px;font-weight:bold;border-radius:6px;")
        self.answer.setText(r.answer)
        self.score.setText(f"{r.score:.3f}  (top 1 %: {r.score_top1:.3f}, P(yes) {r.p_yes:.2f})")
        self.position.setText(r.position or "–")
        self.types.setText(", ".join(f"{n} ({p:.0%})" for n, p in r.defect_types) or "–")
        self.timing.setText(f"{r.latency_ms:.0f} ms")
        self.mode.setText(f"{r.mode} · {r.model_id}")
        stored = outcome.inspection_id is not None
        for b in self.decision_buttons.values():
            b.setEnabled(stored)
        self.decision_label.setText("" if stored else "Not saved: see the status bar")
        self._live_frame = None
        self._redraw()

    def show_frame(self, rgb: np.ndarray) -> None:
        """A newer camera frame than the last inspected one: draw it with the latest map over it."""
        self._live_frame = rgb
        self._redraw()

    def show_stats(self, info: dict) -> None:
        text = f"{info['source']} — {info['state']}"
        if info.get("message"):  # e.g. a camera reconnecting, or a folder that went away
            text += f": {info['message']}"
        self.source_label.setText(text)
        self.source_label.setStyleSheet("color:#c62828;" if info["state"] in ("reconnecting", "failed") else "")
        text = f"{info['captured']} in, {info['dropped']} dropped"
        if info.get("fps"):
            text += f", {info['fps']:.1f} fps"
        if info.get("pending"):
            text += f", {info['pending']} waiting"
        self.counts.setText(text)

    def _redraw(self) -> None:
        base = self._live_frame if self._live_frame is not None else (self.outcome.image if self.outcome else None)
        if base is None:
            return
        amap = self.outcome.result.anomaly_map if self.outcome else None
        if amap is not None and amap.shape != base.shape[:2]:
            amap = None if self._live_frame is None else amap  # render() resizes a live frame's map
        rgb = render(base, amap, mode=self.overlay_mode.currentData(), opacity=self.opacity.value() / 100,
                     visible=self.overlay_visible.isChecked())
        self.view.set_image(to_qimage(rgb))
