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


def _thumbnail(rgb: np.ndarray | None, size: tuple[int, int]) -> QPixmap:
    """A small copy of the image; a grey one of its shape (`size`, (H, W)) when the image is gone."""
    h, w = rgb.shape[:2] if rgb is not None else size
    scale = min(THUMB_PX / max(w, 1), THUMB_PX * 2 / 3 / max(h, 1))
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    if rgb is None:  # a result from History whose stored image is gone
        blank = QPixmap(*shape)
        blank.fill(QColor("#9e9e9e"))
        return blank
    return QPixmap.fromImage(to_qimage(cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA)))


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
        self.addItem(self._item(outcome))
        self._trim()

    def insert_after(self, anchor: InspectionOutcome | None, outcomes: list[InspectionOutcome]) -> None:
        """Earlier results (oldest first) placed after `anchor`, or first when it is None or gone: results
        that came after `anchor` stay the newest. The oldest leave when the strip is full, as with `add`."""
        row = next((i + 1 for i, o in enumerate(self._outcomes) if o is anchor), 0)
        for outcome in outcomes:
            self._outcomes.insert(row, outcome)
            self.insertItem(row, self._item(outcome))
            row += 1
        self._trim()

    def _item(self, outcome: InspectionOutcome) -> QListWidgetItem:
        item = QListWidgetItem(QIcon(_thumbnail(outcome.image, outcome.result.image_size)), self._text(outcome))
        tip = f"{outcome_label(outcome)}: {outcome.verdict.value}"
        earlier = outcome.from_history
        if earlier is not None:
            tip += " (from History)" + (f"\n{earlier.problem}" if earlier.problem else "")
        item.setToolTip(tip)
        item.setForeground(QBrush(VERDICT_COLOURS[outcome.verdict]))
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
        return item

    def _trim(self) -> None:
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
