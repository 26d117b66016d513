"""A small defect-rate chart drawn with QPainter: inspections per bucket as bars, defect rate as a line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from iadgpt_desktop.storage.wording import counted

BUCKET_STEPS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
BAR_COLOUR = QColor(144, 164, 174, 150)  # light blue-grey: volume is context, not the message
RATE_COLOUR = QColor(198, 40, 40)  # the defect colour used by the live view's banner
GRID_COLOUR = QColor(128, 128, 128, 60)

Point = tuple[datetime, int, int]  # bucket start, inspections, defective ones


class TrendChart(QWidget):
    """Defect rate (%) per day or hour over inspection counts; `set_data` with repository.defect_rate_trend output."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._points: list[Point] = []
        self._bucket = "day"
        self.setMinimumSize(320, 130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMouseTracking(True)

    # ---- data ------------------------------------------------------------------------------------

    def set_data(self, points: list[Point], bucket: str | None = None) -> None:
        """Show `(bucket start, total, defective)` points, oldest first; `bucket` ("day"/"hour") is inferred if None."""
        self._points = sorted((_aware(t), int(total), int(bad)) for t, total, bad in points)
        self._bucket = bucket if bucket in BUCKET_STEPS else _infer_bucket(self._points)
        self.update()

    def points(self) -> list[Point]:
        return list(self._points)

    def bucket(self) -> str:
        return self._bucket

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(600, 160)

    def title(self) -> str:
        total = sum(p[1] for p in self._points)
        bad = sum(p[2] for p in self._points)
        if not total:
            return f"Defect rate per {self._bucket}"
        return f"Defect rate per {self._bucket} — {counted(total, 'inspection')}, {100.0 * bad / total:.1f} % defective"

    # ---- geometry --------------------------------------------------------------------------------

    def _plot_rect(self) -> QRectF:
        fm = QFontMetrics(self._small_font())
        left = fm.horizontalAdvance("100 %") + 10
        right = fm.horizontalAdvance("00000") + 10
        top = fm.height() + 10
        bottom = fm.height() + 8
        return QRectF(left, top, max(10.0, self.width() - left - right), max(10.0, self.height() - top - bottom))

    def _slot_span(self) -> tuple[datetime, int]:
        """The first bucket start and the number of bucket slots from the first to the last point."""
        step = BUCKET_STEPS[self._bucket]
        first, last = self._points[0][0], self._points[-1][0]
        return first, int((last - first) / step) + 1

    def _x_of(self, t: datetime, plot: QRectF, first: datetime, slots: int) -> float:
        """The centre of the slot that starts at `t`."""
        step = BUCKET_STEPS[self._bucket]
        return plot.left() + ((t - first) / step + 0.5) * plot.width() / slots

    def _small_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1.0))
        return font

    # ---- painting --------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        p.fillRect(self.rect(), palette.base())
        text_colour = palette.text().color()
        plot = self._plot_rect()

        title_font = QFont(self.font())
        title_font.setBold(True)
        p.setFont(self._small_font())
        legend_width = self._draw_legend(p, plot, text_colour) if self._points else 0
        p.setFont(title_font)
        p.setPen(text_colour)
        room = self.width() - 12 - legend_width - 12
        title = QFontMetrics(title_font).elidedText(self.title(), Qt.TextElideMode.ElideRight, max(room, 20))
        p.drawText(QRectF(6, 2, room, plot.top() - 4), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   title)
        p.setFont(self._small_font())
        self._draw_axes(p, plot, text_colour)
        if not self._points:
            p.setPen(QColor(140, 140, 140))
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "No data")
            return
        first, slots = self._slot_span()
        self._draw_bars(p, plot, first, slots, text_colour)
        self._draw_rate(p, plot, first, slots)
        self._draw_time_labels(p, plot, first, slots, text_colour)

    def _draw_legend(self, p: QPainter, plot: QRectF, text_colour: QColor) -> int:
        """Draw the legend at the top right; returns the width it takes."""
        fm = QFontMetrics(p.font())
        y = (plot.top() - 4) / 2 + 2
        rate_text, bars_text = "defect rate", "inspections"
        x = self.width() - 8 - fm.horizontalAdvance(rate_text)
        p.setPen(text_colour)
        p.drawText(QPointF(x, y + fm.ascent() / 2 - 1), rate_text)
        p.setPen(QPen(RATE_COLOUR, 2))
        p.drawLine(QPointF(x - 22, y), QPointF(x - 6, y))
        p.setBrush(RATE_COLOUR)
        p.drawEllipse(QPointF(x - 14, y), 2.5, 2.5)
        x -= 34 + fm.horizontalAdvance(bars_text)
        p.setPen(text_colour)
        p.drawText(QPointF(x, y + fm.ascent() / 2 - 1), bars_text)
        p.fillRect(QRectF(x - 16, y - 5, 10, 10), BAR_COLOUR)
        return int(self.width() - (x - 16))

    def _draw_axes(self, p: QPainter, plot: QRectF, text_colour: QColor) -> None:
        fm = QFontMetrics(p.font())
        for percent in (0, 25, 50, 75, 100):
            y = plot.bottom() - percent / 100 * plot.height()
            p.setPen(QPen(GRID_COLOUR, 1, Qt.PenStyle.DashLine if percent else Qt.PenStyle.SolidLine))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            if percent % 50 == 0 or plot.height() >= 90:
                p.setPen(RATE_COLOUR if percent else text_colour)
                label = f"{percent} %"
                p.drawText(QPointF(plot.left() - 5 - fm.horizontalAdvance(label), y + fm.ascent() / 2 - 1), label)
        p.setPen(QPen(text_colour, 1))
        p.drawLine(plot.bottomLeft(), plot.bottomRight())
        p.drawLine(plot.bottomLeft(), plot.topLeft())

    def _draw_bars(self, p: QPainter, plot: QRectF, first: datetime, slots: int, text_colour: QColor) -> None:
        top_total = max(t for _, t, _ in self._points) or 1
        slot_width = plot.width() / slots
        bar_width = max(1.0, slot_width * 0.7)
        for t, total, _ in self._points:
            h = total / top_total * plot.height()
            x = self._x_of(t, plot, first, slots)
            p.fillRect(QRectF(x - bar_width / 2, plot.bottom() - h, bar_width, h), BAR_COLOUR)
        # The bars have their own scale, on the right: 0 .. the busiest bucket.
        fm = QFontMetrics(p.font())
        p.setPen(QColor(110, 125, 135))
        p.drawText(QPointF(plot.right() + 5, plot.top() + fm.ascent() / 2), f"{top_total:,}")
        p.drawText(QPointF(plot.right() + 5, plot.bottom() + fm.ascent() / 2 - 1), "0")

    def _draw_rate(self, p: QPainter, plot: QRectF, first: datetime, slots: int) -> None:
        step = BUCKET_STEPS[self._bucket]
        path = QPainterPath()
        dots: list[QPointF] = []
        previous: datetime | None = None
        for t, total, bad in self._points:
            if not total:
                continue
            point = QPointF(self._x_of(t, plot, first, slots), plot.bottom() - bad / total * plot.height())
            # A bucket without inspections has no rate: break the line there instead of drawing across.
            if previous is None or t - previous > step:
                path.moveTo(point)
            else:
                path.lineTo(point)
            dots.append(point)
            previous = t
        p.setPen(QPen(RATE_COLOUR, 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)
        p.setBrush(RATE_COLOUR)
        radius = 3.0 if len(dots) <= plot.width() / 8 else 1.5
        for dot in dots:
            p.drawEllipse(dot, radius, radius)

    def _draw_time_labels(self, p: QPainter, plot: QRectF, first: datetime, slots: int,
                          text_colour: QColor) -> None:
        fm = QFontMetrics(p.font())
        step = BUCKET_STEPS[self._bucket]
        widest = fm.horizontalAdvance(self._label(first, first)) + 16
        every = max(1, -(-slots * widest // int(max(1.0, plot.width()))))  # slots per label, rounded up
        p.setPen(text_colour)
        previous: datetime | None = None
        last_right = -1e9
        for i in range(0, slots, every):
            t = first + i * step
            label = self._label(t, previous)
            x = self._x_of(t, plot, first, slots)
            w = fm.horizontalAdvance(label)
            left = min(max(x - w / 2, 0.0), self.width() - w)
            if left < last_right + 6:
                continue
            p.drawLine(QPointF(x, plot.bottom()), QPointF(x, plot.bottom() + 3))
            p.drawText(QPointF(left, plot.bottom() + 4 + fm.ascent()), label)
            last_right = left + w
            previous = t

    def _label(self, t: datetime, previous: datetime | None) -> str:
        if self._bucket == "day":
            # A day bucket is a UTC calendar day; its date is its name.
            return t.strftime("%b %d")
        local = t.astimezone()
        if previous is None or previous.astimezone().date() != local.date():
            return local.strftime("%b %d %H:00")
        return local.strftime("%H:00")

    # ---- tooltips --------------------------------------------------------------------------------

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ToolTip:
            text = self._tooltip_at(e.pos().x())  # a QHelpEvent
            if text:
                QToolTip.showText(e.globalPos(), text, self)
            else:
                QToolTip.hideText()
                e.ignore()
            return True
        return super().event(e)

    def _tooltip_at(self, x: float) -> str:
        if not self._points:
            return ""
        plot = self._plot_rect()
        first, slots = self._slot_span()
        t, total, bad = min(self._points, key=lambda pt: abs(self._x_of(pt[0], plot, first, slots) - x))
        if abs(self._x_of(t, plot, first, slots) - x) > max(8.0, plot.width() / slots):
            return ""
        when = t.strftime("%Y-%m-%d") if self._bucket == "day" else t.astimezone().strftime("%Y-%m-%d %H:00")
        rate = 100.0 * bad / total if total else 0.0
        return f"{when}: {counted(total, 'inspection')}, {bad:,} defective ({rate:.1f} %)"


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def _infer_bucket(points: list[Point]) -> str:
    for (a, _, _), (b, _, _) in zip(points, points[1:], strict=False):
        if b - a < timedelta(days=1):
            return "hour"
    return "day"
