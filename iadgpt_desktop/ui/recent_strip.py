"""The strip of recent results under the live image: step back to a part, see which were defective."""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem

from iadgpt_desktop.ui.overlay import to_qimage
from iadgpt_desktop.workers.contract import Verdict
from iadgpt_desktop.workers.inference import InspectionOutcome

THUMB_PX = 56
CAPACITY = 40  # results kept in the strip; older ones are in History
VERDICT_COLOURS = {Verdict.DEFECTIVE: QColor("#c62828"), Verdict.GOOD: QColor("#2e7d32")}


def outcome_label(outcome: InspectionOutcome) -> str:
    """How a result is named to the operator: "#39 pitting_124.png" (or the frame, when unsaved)."""
    number = f"#{outcome.inspection_id}" if outcome.inspection_id is not None else "unsaved"
    return f"{number} {outcome.file_name}".strip()


def _thumbnail(rgb: np.ndarray) -> QPixmap:
    h, w = rgb.shape[:2]
    scale = min(THUMB_PX / w, THUMB_PX * 2 / 3 / h)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return QPixmap.fromImage(to_qimage(small))


class RecentStrip(QListWidget):
    """The last results, oldest left; a click (or previous/next) picks the one the operator reads."""

    picked = Signal(object)  # InspectionOutcome the operator chose

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMB_PX, THUMB_PX * 2 // 3))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scrollbar = self.horizontalScrollBar().sizeHint().height()
        self.setFixedHeight(THUMB_PX * 2 // 3 + self.fontMetrics().height() + scrollbar + 16)
        self.setSpacing(2)
        self.setToolTip("Recent results: click one to read it again (Alt+Left / Alt+Right step through them)")
        self._outcomes: list[InspectionOutcome] = []
        self.itemClicked.connect(self._clicked)

    # -- content -----------------------------------------------------------------------------
    def add(self, outcome: InspectionOutcome) -> None:
        self._outcomes.append(outcome)
        item = QListWidgetItem(QIcon(_thumbnail(outcome.image)), self._text(outcome))
        item.setToolTip(f"{outcome_label(outcome)}: {outcome.verdict.value}")
        item.setForeground(QBrush(VERDICT_COLOURS[outcome.verdict]))
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.addItem(item)
        while len(self._outcomes) > CAPACITY:
            self._outcomes.pop(0)
            self.takeItem(0)

    def replace(self, outcome: InspectionOutcome) -> None:
        """The same result, now stored (its number is known): relabel its item."""
        for row, known in enumerate(self._outcomes):
            if known is outcome:
                self.item(row).setText(self._text(outcome))

    @staticmethod
    def _text(outcome: InspectionOutcome) -> str:
        mark = "✗" if outcome.verdict is Verdict.DEFECTIVE else "✓"
        number = f"#{outcome.inspection_id}" if outcome.inspection_id is not None else "–"
        return f"{mark} {number}"

    def outcomes(self) -> list[InspectionOutcome]:
        return list(self._outcomes)

    # -- selection ---------------------------------------------------------------------------
    def mark(self, outcome: InspectionOutcome | None) -> None:
        """Highlight the result being read (without emitting `picked`)."""
        row = next((i for i, o in enumerate(self._outcomes) if o is outcome), -1)
        self.blockSignals(True)
        self.setCurrentRow(row)
        self.blockSignals(False)
        if row >= 0:
            self.scrollToItem(self.item(row))

    def neighbour(self, outcome: InspectionOutcome | None, step: int) -> InspectionOutcome | None:
        """The result `step` places from `outcome` (None past either end)."""
        if not self._outcomes:
            return None
        row = next((i for i, o in enumerate(self._outcomes) if o is outcome), len(self._outcomes))
        target = row + step
        return self._outcomes[target] if 0 <= target < len(self._outcomes) else None

    def newest(self) -> InspectionOutcome | None:
        return self._outcomes[-1] if self._outcomes else None

    def _clicked(self, item: QListWidgetItem) -> None:
        self.picked.emit(self._outcomes[self.row(item)])
