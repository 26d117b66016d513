"""Issue 12, problems 7 and 9: nothing cut off at 1366x768 and 1920x1080, the chat dock can be
closed, a legend, a visible outline, zoom/pan/fit; user and model text is never rendered as markup."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QAbstractButton, QLabel, QWidget

from iadgpt_desktop.ui.image_view import ImageView
from iadgpt_desktop.ui.inspection_detail import InspectionDetail
from iadgpt_desktop.ui.live_view import LiveView
from iadgpt_desktop.ui.overlay import outline_overlay, outline_width, to_qimage
from tests.app.conftest import copy_samples
from tests.app.outcomes import make_outcome

MARKUP = "<b>Bold</b><img src='/etc/hostname'> &amp; <a href='x'>link</a>"


def cut_off(root: QWidget) -> list[str]:
    """Visible labels and buttons whose text does not fit the space they were given."""
    bad = []
    for label in root.findChildren(QLabel):
        if not label.isVisible() or not label.text():
            continue
        if label.wordWrap():
            if label.heightForWidth(label.width()) > label.height() + 1:
                bad.append(f"label {label.text()[:40]!r}: {label.height()} px high, needs "
                           f"{label.heightForWidth(label.width())}")
        elif label.sizeHint().width() > label.width() + 1:
            bad.append(f"label {label.text()[:40]!r}: {label.width()} px wide, needs {label.sizeHint().width()}")
    for button in root.findChildren(QAbstractButton):
        if button.isVisible() and button.text() and button.sizeHint().width() > button.width() + 1:
            bad.append(f"button {button.text()!r}: {button.width()} px wide, needs {button.sizeHint().width()}")
    return bad


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_nothing_is_cut_off(station, qtbot, tmp_path, size) -> None:
    w = station
    copy_samples(tmp_path / "in", "pitting_*.png", 2)
    with qtbot.waitSignal(w.batch_done, timeout=120000):
        w.open_folder(tmp_path / "in", watch=False)
    long = make_outcome(99, answer="Yes, there is an abnormality at the top left and at the bottom right of "
                                   "the spindle, along the thread flank.")
    long.result.defect_types = [("pitting", 0.93), ("surface_wear", 0.05), ("rust_stain", 0.02)]
    long.result.position = "top left, bottom right and center"
    w.live.add_outcome(long)
    assert w.minimumSizeHint().width() <= size[0] and w.minimumSizeHint().height() <= size[1] - 40
    w.resize(*size)
    for tab in (w.live, w.history, w.products):
        w.tabs.setCurrentWidget(tab)
        if tab is w.history:
            qtbot.waitUntil(lambda: w.history.model.rowCount() == 2, timeout=5000)
            w.history.select_inspection(w.history.model.row_at(0).id)
        qtbot.wait(50)
        assert cut_off(w) == [], f"{type(tab).__name__} at {size}"


def test_chat_dock_can_be_closed_and_reopened(station) -> None:
    w = station
    dock = w.chat_dock
    assert dock.features() & dock.DockWidgetFeature.DockWidgetClosable
    dock.close()
    assert not dock.isVisible()
    w.chat_dock.toggleViewAction().trigger()
    assert dock.isVisible()


def test_legend_outline_and_zoom(qtbot) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    assert "blue normal" in view.legend.text() and "red anomalous" in view.legend.text()
    view.overlay_mode.setCurrentIndex(view.overlay_mode.findData("outline"))
    assert "outline" in view.legend.text()
    assert outline_width((184, 452)) >= 2
    image = np.full((184, 452, 3), 120, np.uint8)
    amap = np.zeros((184, 452), np.float32)
    amap[60:120, 200:260] = 1.0
    drawn = outline_overlay(image, amap, opacity=1.0)
    red = (drawn[..., 0] > 200) & (drawn[..., 1] < 100)
    assert red[60:120, 190:270].sum(axis=0).max() >= 2 * outline_width((184, 452)), "the outline is thick"

    img = ImageView()
    qtbot.addWidget(img)
    img.resize(400, 300)
    img.set_image(to_qimage(image))
    fit = img.image_rect()
    img.zoom_in()
    assert img.zoom > 1 and img.image_rect().width() > fit.width()
    before = img.image_rect()
    qtbot.mousePress(img, Qt.MouseButton.LeftButton, pos=QPointF(200, 150).toPoint())
    qtbot.mouseMove(img, QPointF(150, 150).toPoint())
    qtbot.mouseRelease(img, Qt.MouseButton.LeftButton, pos=QPointF(150, 150).toPoint())
    assert img.image_rect().x() < before.x(), "dragging pans the zoomed image"
    img.fit()
    assert img.zoom == 1 and img.image_rect() == fit


def test_user_and_model_text_is_plain(qtbot, tmp_path) -> None:
    view = LiveView()
    qtbot.addWidget(view)
    view.add_outcome(make_outcome(5, answer=MARKUP, file_name="<b>x</b>.png"))
    for label in (view.answer, view.file_label, view.position, view.types, view.mode):
        assert label.textFormat() == Qt.TextFormat.PlainText
    assert view.answer.text() == MARKUP

    detail = InspectionDetail()
    qtbot.addWidget(detail)
    assert all(label.textFormat() == Qt.TextFormat.PlainText for label in detail.fields.values())
