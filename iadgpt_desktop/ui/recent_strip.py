"""The strip of recent results under the live image: step back to a part, see which were defective.

Images that could not be inspected take their place in it too, as a red mark with the reason in
its tooltip, so the sequence the operator sees has no silent gaps; a click on one puts the failure
on screen (`failure_picked`). Previous/next step through the results only.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem

from iadgpt_desktop.ui.overlay import to_qimage
from iadgpt_desktop.workers.contract import InspectionFailure, Verdict
from iadgpt_desktop.workers.inference import InspectionOutcome

THUMB_PX = 56
CAPACITY = 40  # results kept in the strip; older ones are in History
VERDICT_COLOURS = {Verdict.DEFECTIVE: QColor("#c62828"), Verdict.GOOD: QColor("#2e7d32")}
FAILED_COLOUR = QColor("#b71c1c")
GONE_COLOUR = QColor("#9e9e9e")  # a result from History whose stored image is gone
FAILED_MARK = "⚠"
FAILED_SHAPE = (2, 3)  # (H, W) of a failure's mark: a blank of the thumbnails' usual 2:3


def outcome_label(outcome: InspectionOutcome) -> str:
    """How a result is named to the operator: "#39 pitting_124.png" (or the frame, when unsaved)."""
    number = f"#{outcome.inspection_id}" if outcome.inspection_id is not None else "unsaved"
    return f"{number} {outcome.file_name}".strip()


def _thumbnail(rgb: np.ndarray | None, size: tuple[int, int], blank: QColor = GONE_COLOUR) -> QPixmap:
    """A small copy of the image; one of colour `blank` in its shape (`size`, (H, W)) when there is none."""
    h, w = rgb.shape[:2] if rgb is not None else size
    scale = min(THUMB_PX / max(w, 1), THUMB_PX * 2 / 3 / max(h, 1))
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    if rgb is None:  # a result from History whose stored image is gone, or an image not inspected
        empty = QPixmap(*shape)
        empty.fill(blank)
        return empty
    return QPixmap.fromImage(to_qimage(cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA)))


class RecentStrip(QListWidget):
    """The last results, oldest left; a click (or previous/next) picks the one the operator reads."""

    picked = Signal(object)  # InspectionOutcome the operator chose
    failure_picked = Signal(object)  # InspectionFailure the operator chose

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
        self._entries: list[InspectionOutcome | InspectionFailure] = []  # oldest first, as the items
        self.itemClicked.connect(self._clicked)

    # -- content -----------------------------------------------------------------------------
    def add(self, outcome: InspectionOutcome) -> None:
        self._entries.append(outcome)
        self.addItem(self._item(outcome))
        self._trim()

    def add_failure(self, failure: InspectionFailure) -> None:
        """An image that could not be inspected, in its place in the sequence."""
        self._entries.append(failure)
        item = QListWidgetItem(QIcon(_thumbnail(None, FAILED_SHAPE, FAILED_COLOUR)), f"{FAILED_MARK} failed")
        item.setToolTip(f"{failure.name}: not inspected\n{failure.message}")
        item.setForeground(QBrush(FAILED_COLOUR))
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.addItem(item)
        self._trim()

    def insert_after(self, anchor: InspectionOutcome | None, outcomes: list[InspectionOutcome]) -> None:
        """Earlier results (oldest first) placed after `anchor`, or first when it is None or gone: results
        that came after `anchor` stay the newest. The oldest leave when the strip is full, as with `add`."""
        row = next((i + 1 for i, o in enumerate(self._entries) if o is anchor), 0)
        for outcome in outcomes:
            self._entries.insert(row, outcome)
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
        while len(self._entries) > CAPACITY:
            self._entries.pop(0)
            self.takeItem(0)

    def replace(self, outcome: InspectionOutcome) -> None:
        """The same result, now stored (its number is known): relabel its item."""
        for row, known in enumerate(self._entries):
            if known is outcome:
                self.item(row).setText(self._text(outcome))

    @staticmethod
    def _text(outcome: InspectionOutcome) -> str:
        mark = "✗" if outcome.verdict is Verdict.DEFECTIVE else "✓"
        number = f"#{outcome.inspection_id}" if outcome.inspection_id is not None else "–"
        return f"{mark} {number}"

    def outcomes(self) -> list[InspectionOutcome]:
        """The results in the strip, oldest first (not the failures)."""
        return [e for e in self._entries if isinstance(e, InspectionOutcome)]

    def failures(self) -> list[InspectionFailure]:
        return [e for e in self._entries if isinstance(e, InspectionFailure)]

    # -- selection ---------------------------------------------------------------------------
    def mark(self, entry: InspectionOutcome | InspectionFailure | None) -> None:
        """Highlight the result (or failure) being read (without emitting `picked`)."""
        row = next((i for i, o in enumerate(self._entries) if o is entry), -1)
        self.blockSignals(True)
        self.setCurrentRow(row)
        self.blockSignals(False)
        if row >= 0:
            self.scrollToItem(self.item(row))

    def neighbour(self, outcome: InspectionOutcome | None, step: int) -> InspectionOutcome | None:
        """The result `step` results from `outcome` (None past either end); failures are stepped over."""
        outcomes = self.outcomes()
        if not outcomes:
            return None
        row = next((i for i, o in enumerate(outcomes) if o is outcome), len(outcomes))
        target = row + step
        return outcomes[target] if 0 <= target < len(outcomes) else None

    def newest(self) -> InspectionOutcome | None:
        """The newest result (a failure after it is not one)."""
        return next((e for e in reversed(self._entries) if isinstance(e, InspectionOutcome)), None)

    def _clicked(self, item: QListWidgetItem) -> None:
        entry = self._entries[self.row(item)]
        (self.failure_picked if isinstance(entry, InspectionFailure) else self.picked).emit(entry)
