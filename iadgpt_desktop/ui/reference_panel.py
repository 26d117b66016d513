"""Beside the inspected part in few-shot mode: the good reference image most like it, by name.

The worker finds it (the inspector's nearest reference by F_img) and sends a display copy of its file
with the outcome; this panel only shows it, with the file name as plain text. A stored result read back
from History brings the reference stored with it (name and similarity), and its file while that is there.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from iadgpt_desktop.storage.wording import REFERENCE_GONE, describe_nearest_reference
from iadgpt_desktop.ui.image_view import ImageView
from iadgpt_desktop.ui.overlay import to_qimage
from iadgpt_desktop.workers.inference import InspectionOutcome

NO_INDEX = "– (this memory bank has no reference index: rebuild it to compare with the nearest good part)"


def describe_reference(outcome: InspectionOutcome | None) -> str:
    """The Live view's "Reference" row: the nearest good reference's name and similarity."""
    if outcome is None:
        return "–"
    nearest = outcome.nearest_reference
    stored = outcome.from_history
    if nearest is None and stored is not None:  # stored before references were kept, or there was none
        return "– (none recorded with this inspection)" if outcome.result.mode == "few-shot" else "–"
    if nearest is None:
        return NO_INDEX if outcome.result.mode == "few-shot" else "–"
    text = describe_nearest_reference(nearest.name, nearest.similarity)
    return f"{text} {REFERENCE_GONE}" if stored is not None and stored.reference_gone else text


class ReferencePanel(QWidget):
    """The nearest good reference's image under a title that names its file."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("")
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # a file name is shown as it is
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight:bold;")
        self.view = ImageView("The nearest good reference is shown here in few-shot mode")
        self.view.setMinimumSize(120, 90)
        self._shown: np.ndarray | None = None  # the array on screen (the worker reuses one per reference)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.view, 1)

    def show_outcome(self, outcome: InspectionOutcome | None) -> bool:
        """Show the nearest reference of `outcome`; False (nothing to show) when it has none."""
        nearest = outcome.nearest_reference if outcome is not None else None
        if nearest is None:
            self.title.setText("")
            self._shown = None
            self.view.set_image(None)
            return False
        self.title.setText(f"Nearest good reference: {nearest.name}")
        self.title.setToolTip(nearest.path or "an image given as an array")
        image = outcome.reference_image
        if image is None:
            self._shown = None
            self.view.set_placeholder(f"{nearest.name} cannot be shown: the file is no longer at "
                                      f"{nearest.path or '(no file)'}")
            self.view.set_image(None)
        elif image is not self._shown:  # the same reference as before: nothing to convert again
            self._shown = image
            self.view.set_image(to_qimage(image))
        return True
