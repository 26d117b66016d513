"""The prompt-bank table of the Products view: defect names and sentences, edited in place.

It only edits: where a bank comes from (the product's own, the shipped one for a class) and any
message about it is the Products view's business; this widget shows the source it is told.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from iadgpt.prompt_bank import PromptBank


class PromptBankEditor(QGroupBox):
    reset_requested = Signal()  # "Reset to the shipped bank for this class" was pressed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Prompt bank (defect sentences)", parent)
        self._base: PromptBank | None = None  # what the table started from (keeps description etc.)
        self._edited = False
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Defect", "Sentence"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, 150)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.itemChanged.connect(self._changed)
        add_row = QPushButton("Add row")
        add_row.clicked.connect(self.add_row)
        self.remove_row_button = QPushButton("Remove row")
        self.remove_row_button.clicked.connect(self.remove_selected_rows)
        reset = QPushButton("Reset to the shipped bank for this class")
        reset.clicked.connect(self.reset_requested)
        self.source = QLabel()
        self.source.setStyleSheet("color:#546e7a;")
        row = QHBoxLayout()
        row.addWidget(add_row)
        row.addWidget(self.remove_row_button)
        row.addWidget(reset)
        row.addStretch(1)
        row.addWidget(self.source)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(row)

    @property
    def edited(self) -> bool:
        """True once the user changed the table since the last `fill`."""
        return self._edited

    def fill(self, bank: PromptBank | None, source: str = "") -> None:
        """Show `bank` (None: an empty table), described as `source`; the table counts as unedited."""
        self._base = bank
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for attribute in bank.attributes if bank else ():
            self._append(attribute.name, attribute.sentence)
        self.table.blockSignals(False)
        self.table.resizeRowsToContents()
        self.source.setText(source)
        self._edited = False

    def _append(self, name: str, sentence: str) -> int:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(name))
        self.table.setItem(row, 1, QTableWidgetItem(sentence))
        return row

    def _changed(self, *_: object) -> None:
        self._edited = True
        self.source.setText("edited, not saved")

    def add_row(self) -> None:
        row = self._append("", "")
        self._changed()
        self.table.setCurrentCell(row, 0)
        self.table.editItem(self.table.item(row, 0))

    def remove_selected_rows(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True)
        for row in rows:
            self.table.removeRow(row)
        if rows:
            self._changed()

    def bank(self, class_name: str) -> PromptBank:
        """The table as a validated PromptBank for `class_name`; raises PromptBankError with what to fix."""
        base = self._base
        attributes = []
        for r in range(self.table.rowCount()):
            name = self.table.item(r, 0)
            sentence = self.table.item(r, 1)
            attributes.append({"name": name.text() if name else "", "sentence": sentence.text() if sentence else ""})
        data = {
            "class": class_name,
            "dataset": base.dataset if base else "",
            "object": base.is_object if base else None,
            "description": base.description if base else "",
            "source": base.source if base and not self._edited else "user",
            "attributes": attributes,
        }
        return PromptBank.from_json(data, origin="in the table")
