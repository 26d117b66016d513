"""The colour legend under the live image: what the heat map's colours or the outline mean."""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def _jet_strip(width: int = 256) -> QImage:
    ramp = np.arange(width, dtype=np.float32) / (width - 1)
    colours = cv2.applyColorMap((ramp * 255).astype(np.uint8)[None, :], cv2.COLORMAP_JET)[..., ::-1]  # (1, W, 3)
    strip = np.ascontiguousarray(np.repeat(colours, 8, axis=0))  # (8, W, 3) RGB
    return QImage(strip.data, width, 8, 3 * width, QImage.Format.Format_RGB888).copy()


class OverlayLegend(QWidget):
    """Heat map: a blue-to-red bar from "normal" to "anomalous"; outline: a red line sample."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._mode = "heatmap"
        self._visible = True
        self._strip = _jet_strip()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(self.fontMetrics().height() + 6)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(300, self.fontMetrics().height() + 6)

    def set_mode(self, mode: str, visible: bool) -> None:
        self._mode, self._visible = mode, visible
        self.update()

    def text(self) -> str:
        """What the legend says, in words (also its tooltip and accessible name)."""
        if not self._visible:
            return "anomaly map hidden"
        if self._mode == "outline":
            return "red outline: region the model finds anomalous"
        return "colour: blue normal → red anomalous"

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        fm = self.fontMetrics()
        h = self.height()
        self.setToolTip(self.text())
        self.setAccessibleName(self.text())
        if not self._visible:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignVCenter, self.text())
            return
        if self._mode == "outline":
            p.setPen(QPen(QColor(255, 40, 40), 3))
            p.drawLine(2, h // 2, 30, h // 2)
            p.setPen(self.palette().windowText().color())
            p.drawText(QRect(38, 0, self.width() - 38, h), Qt.AlignmentFlag.AlignVCenter,
                       "region the model finds anomalous")
            return
        left = fm.horizontalAdvance("normal") + 8
        right = fm.horizontalAdvance("anomalous") + 8
        p.drawText(QRect(0, 0, left, h), Qt.AlignmentFlag.AlignVCenter, "normal")
        bar = QRect(left, h // 2 - 5, max(20, self.width() - left - right), 10)
        p.drawImage(bar, self._strip)
        p.drawText(QRect(bar.right() + 6, 0, right, h), Qt.AlignmentFlag.AlignVCenter, "anomalous")
