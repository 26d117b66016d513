"""A widget that shows an image scaled to fit, with zoom (wheel, +/-), pan (drag) and fit (double click)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

MAX_ZOOM = 16.0
ZOOM_STEP = 1.25


class ImageView(QWidget):
    zoom_changed = Signal(float)  # 1.0 = the whole image fits

    def __init__(self, placeholder: str = "No image", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self._zoom = 1.0  # relative to "fit"
        self._centre = QPointF(0.5, 0.5)  # the image point (0..1) shown at the widget's centre
        self._drag_from: QPointF | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)
        self.setToolTip("Wheel or Ctrl++ / Ctrl+- to zoom, drag to pan, double-click or Ctrl+0 to fit")

    def set_image(self, image: QImage | None) -> None:
        """Show another image; the zoom and pan stay when its size is the same (the next part)."""
        if image is None or self._image is None or image.size() != self._image.size():
            self._zoom, self._centre = 1.0, QPointF(0.5, 0.5)
        self._image = image
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def set_placeholder(self, text: str) -> None:
        """What is said (as plain text) while there is no image."""
        self._placeholder = text
        self.update()

    @property
    def zoom(self) -> float:
        return self._zoom

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(640, 420)

    # -- zoom and pan ------------------------------------------------------------------------
    def fit(self) -> None:
        self._zoom, self._centre = 1.0, QPointF(0.5, 0.5)
        self.zoom_changed.emit(self._zoom)
        self.update()

    def zoom_in(self) -> None:
        self.set_zoom(self._zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self._zoom / ZOOM_STEP)

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under `anchor` (widget coordinates; default the centre) still."""
        zoom = min(max(zoom, 1.0), MAX_ZOOM)
        if self._image is None or zoom == self._zoom:
            return
        if anchor is not None:
            before = self._to_image(anchor)
            self._zoom = zoom
            after = self._to_image(anchor)
            self._centre += before - after
        else:
            self._zoom = zoom
        self._clamp()
        self.zoom_changed.emit(self._zoom)
        self.update()

    def _fit_size(self) -> QSize:
        assert self._image is not None
        return self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)

    def image_rect(self) -> QRect:
        """Where the (zoomed, panned) image is drawn inside the widget."""
        if self._image is None or self._image.isNull():
            return QRect()
        fit = self._fit_size()
        w, h = fit.width() * self._zoom, fit.height() * self._zoom
        x = self.width() / 2 - self._centre.x() * w
        y = self.height() / 2 - self._centre.y() * h
        return QRectF(x, y, w, h).toRect()

    def _to_image(self, point: QPointF) -> QPointF:
        r = QRectF(self.image_rect())
        if r.width() <= 0 or r.height() <= 0:
            return QPointF(0.5, 0.5)
        return QPointF((point.x() - r.x()) / r.width(), (point.y() - r.y()) / r.height())

    def _clamp(self) -> None:
        half = 0.5 / self._zoom  # half the visible fraction of the image
        self._centre = QPointF(min(max(self._centre.x(), half), 1 - half), min(max(self._centre.y(), half), 1 - half))

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        step = event.angleDelta().y()
        if step:
            self.set_zoom(self._zoom * (ZOOM_STEP if step > 0 else 1 / ZOOM_STEP), event.position())
        event.accept()

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton and self._zoom > 1.0:
            self._drag_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self._drag_from is None:
            return
        r = self.image_rect()
        delta = event.position() - self._drag_from
        self._drag_from = event.position()
        if r.width() and r.height():
            self._centre -= QPointF(delta.x() / r.width(), delta.y() / r.height())
            self._clamp()
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag_from = None
        self.unsetCursor()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.fit()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(32, 34, 38))
        if self._image is None or self._image.isNull():
            p.setPen(QColor(170, 170, 170))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._zoom < 4)
        p.drawImage(self.image_rect(), self._image)
        if self._zoom > 1.0:
            p.setPen(QColor(230, 230, 230))
            p.drawText(self.rect().adjusted(6, 4, -6, -4), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop,
                       f"{self._zoom:.0%}".replace("%", " %"))
