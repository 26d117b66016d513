"""The History view's detail panel: one stored inspection's verdict, fields, image and conversation.

It shows what it is given; reading the image, mask and conversation from the database is the
History view's job (it owns every database call and its errors).
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from iadgpt_desktop.storage.records import InspectionRow, MessageRow
from iadgpt_desktop.storage.wording import describe_decision, describe_defect_types
from iadgpt_desktop.ui.history_model import local_time
from iadgpt_desktop.ui.image_view import ImageView
from iadgpt_desktop.ui.overlay import render, to_qimage
from iadgpt_desktop.workers.stored import describe_stored_reference

FIELDS = ("File", "Time", "Product", "Score", "Position", "Defect types", "Reference", "Decision", "Model",
          "Source")


class InspectionDetail(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: np.ndarray | None = None
        self._anomaly_map: np.ndarray | None = None
        self.image_view = ImageView("Select an inspection to see its image")
        self.image_message = QLabel()
        self.image_message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image_message.setWordWrap(True)
        self.image_message.setStyleSheet("background:#202226;color:#ffab91;padding:12px;")
        self.image_stack = QStackedWidget()
        self.image_stack.addWidget(self.image_view)
        self.image_stack.addWidget(self.image_message)
        self.image_stack.setMinimumHeight(200)
        self.show_mask = QCheckBox("Anomaly overlay")
        self.show_mask.setChecked(True)
        self.show_mask.toggled.connect(lambda _on: self._render())

        self.banner = QLabel()
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.banner.setMinimumHeight(34)
        self.banner.setTextFormat(Qt.TextFormat.PlainText)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        for name in FIELDS:
            label = QLabel("—")
            label.setTextFormat(Qt.TextFormat.PlainText)  # names, notes and answers are shown as typed
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(name + ":", label)
            self.fields[name] = label
        self.conversation = QTextBrowser()
        self.conversation.setMinimumHeight(90)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.banner, 1)
        top.addWidget(self.show_mask)
        layout.addLayout(top)
        layout.addWidget(self.image_stack, 3)
        layout.addLayout(form)
        layout.addWidget(QLabel("Answer and conversation:"))
        layout.addWidget(self.conversation, 2)

    def show_row(self, row: InspectionRow | None) -> None:
        """The verdict banner and fields of `row`; None clears the whole panel, image included."""
        if row is None:
            self.banner.setText("No inspection selected")
            self.banner.setStyleSheet("background:#455a64;color:white;font-weight:bold;border-radius:4px;")
            for label in self.fields.values():
                label.setText("—")
            self.conversation.clear()
            self.set_image(None)
            return
        colour = "#c62828" if row.verdict == "defective" else "#2e7d32"
        self.banner.setText(f"#{row.id}  {row.verdict.upper()}  score {row.score:.3f}")
        self.banner.setStyleSheet(f"background:{colour};color:white;font-size:15px;font-weight:bold;"
                                  "border-radius:4px;")
        decided = describe_decision(row.operator_decision)
        if row.operator_decision:
            by = f" by {row.operator}" if row.operator else ""
            at = f" at {local_time(row.decided_at)}" if row.decided_at else ""
            decided += by + at + (f" — {row.note}" if row.note else "")
        values = {
            "File": row.file_name or "— (not recorded for inspections before this version)",
            "Time": local_time(row.created_at),
            "Product": row.product_name or "—",
            "Score": f"{row.score:.4f} (top-1 {row.score_top1:.4f}, p(yes) {row.p_yes:.2f})",
            "Position": row.position or "—",
            "Defect types": describe_defect_types(row.defect_types) or "—",
            "Reference": describe_stored_reference(row),
            "Decision": decided,
            "Model": f"{row.model_id} ({row.mode}), {row.latency_ms:.0f} ms",
            "Source": f"{row.source} — {row.width}×{row.height}",
        }
        for name, text in values.items():
            self.fields[name].setText(text)
        self.fields["Reference"].setToolTip(row.reference_path or "")

    def set_image(self, image: np.ndarray | None, anomaly_map: np.ndarray | None = None, note: str = "") -> None:
        """Show the stored image with its anomaly map (`note` says why a map is missing)."""
        self._image, self._anomaly_map = image, anomaly_map
        self.show_mask.setText("Anomaly overlay" + (f" ({note})" if note else ""))
        if image is None:
            self.image_view.set_image(None)
            self.image_stack.setCurrentWidget(self.image_view)
            return
        self._render()

    def _render(self) -> None:
        if self._image is None:
            return
        shown = render(self._image, self._anomaly_map if self.show_mask.isChecked() else None,
                       mode="heatmap", opacity=0.45)
        self.image_view.set_image(to_qimage(shown))
        self.image_stack.setCurrentWidget(self.image_view)

    def show_image_problem(self, text: str) -> None:
        """In place of the image, say why it cannot be shown."""
        self._image = self._anomaly_map = None
        self.image_view.set_image(None)
        self.image_message.setText(text)
        self.image_stack.setCurrentWidget(self.image_message)

    def show_conversation(self, row: InspectionRow, messages: list[MessageRow]) -> None:
        parts = [f"<p><b style='color:#2e7d32'>IAD-GPT:</b> {html.escape(row.answer or '—')}</p>"]
        for m in messages:
            who, colour = ("You", "#1565c0") if m.role == "user" else ("IAD-GPT", "#2e7d32")
            parts.append(f"<p><b style='color:{colour}'>{who}:</b> {html.escape(m.content)}</p>")
        if not messages:
            parts.append("<p style='color:gray'>No follow-up questions were asked.</p>")
        self.conversation.setHtml("".join(parts))

    def image(self) -> QImage | None:
        """The image shown now (None when there is none)."""
        return self.image_view.image()
