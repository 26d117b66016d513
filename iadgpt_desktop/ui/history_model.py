"""The History table's model: every inspection a filter selects, read a page at a time on demand.

It knows only the row count and reads pages of PAGE_SIZE rows when the view paints them, so a history
of 100k inspections opens as fast as one of 100. Sorting is done by the database (a re-query).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont

from iadgpt_desktop.storage.records import InspectionRow
from iadgpt_desktop.storage.wording import describe_decision, describe_defect_types

log = logging.getLogger(__name__)

PAGE_SIZE = 200
MAX_CACHED_PAGES = 64  # 12,800 rows in memory at most, whatever the history's size
TYPES_IN_CELL = 3  # defect types in the table's cell; the detail lists them all
ROW_ROLE = Qt.ItemDataRole.UserRole  # data(index, ROW_ROLE) is the row's InspectionRow

# (header, repository order_by key or None when the database cannot sort by it)
COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("Time", "created_at"),
    ("File", "file_name"),
    ("Product", "product"),
    ("Verdict", "verdict"),
    ("Score", "score"),
    ("Position", None),
    ("Defect types", None),
    ("Decision", "operator_decision"),
    ("Latency (ms)", "latency_ms"),
    ("Id", "id"),
)
NUMERIC_COLUMNS = {"Score", "Latency (ms)", "Id"}
VERDICT_COLOURS = {"defective": QColor(198, 40, 40), "good": QColor(46, 125, 50)}
PageLoader = Callable[[int, int], list[InspectionRow]]  # (offset, limit) -> rows


def local_time(t: datetime) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


class InspectionTableModel(QAbstractTableModel):
    """All inspections a filter selects, read a page at a time on demand; rowCount is the full count."""

    sort_requested = Signal(str, bool)  # repository order_by key, descending
    load_failed = Signal(str)  # a page could not be read

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._total = 0
        self._loader: PageLoader | None = None
        self._pages: OrderedDict[int, list[InspectionRow]] = OrderedDict()

    # ---- filling ---------------------------------------------------------------------------------

    def reset(self, total: int, loader: PageLoader | None) -> None:
        """Show `total` rows read through `loader`; the first page is read at once."""
        self.beginResetModel()
        self._total = max(0, int(total))
        self._loader = loader
        self._pages.clear()
        self.endResetModel()
        if self._total:
            self.page(0)

    def clear(self) -> None:
        self.reset(0, None)

    def page(self, number: int) -> list[InspectionRow]:
        """The rows of page `number`, read from the database the first time (least recently used pages are dropped)."""
        rows = self._pages.get(number)
        if rows is not None:
            self._pages.move_to_end(number)
            return rows
        rows = []
        if self._loader is not None:
            try:
                rows = self._loader(number * PAGE_SIZE, PAGE_SIZE)
            except Exception as exc:  # noqa: BLE001 - the UI boundary: an empty page, and say why
                log.exception("reading history page %d failed", number)
                self.load_failed.emit(f"History unavailable: {exc}")
        # A failed page is cached empty too, so painting does not retry it for every cell.
        self._pages[number] = rows
        while len(self._pages) > MAX_CACHED_PAGES:
            self._pages.popitem(last=False)
        return rows

    def cached_pages(self) -> list[int]:
        return sorted(self._pages)

    def row_at(self, row: int) -> InspectionRow | None:
        if not 0 <= row < self._total:
            return None
        rows = self.page(row // PAGE_SIZE)
        offset = row % PAGE_SIZE
        return rows[offset] if offset < len(rows) else None

    def find_row(self, inspection_id: int, near: int) -> int:
        """The row of `inspection_id`, looked for in the pages around row `near` and the cached ones; -1 if absent."""
        candidates = [near // PAGE_SIZE + d for d in (0, 1, -1)] + list(self._pages)
        for number in dict.fromkeys(candidates):
            if 0 <= number * PAGE_SIZE < self._total:
                for i, r in enumerate(self.page(number)):
                    if r.id == inspection_id:
                        return number * PAGE_SIZE + i
        return -1

    # ---- Qt model API ----------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else self._total

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return None if COLUMNS[section][1] else "This column cannot be sorted"
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.row_at(index.row())
        if row is None:
            return "…" if role == Qt.ItemDataRole.DisplayRole else None
        name = COLUMNS[index.column()][0]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, name)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ForegroundRole and name == "Verdict":
            return VERDICT_COLOURS.get(row.verdict)
        if role == Qt.ItemDataRole.FontRole and name == "Verdict":
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and name in NUMERIC_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:  # the whole text of a narrow cell, then the answer
            cell = self._text(row, name) if name in ("File", "Product", "Position", "Defect types") else ""
            return "\n".join(t for t in (cell, row.answer) if t) or None
        return None

    @staticmethod
    def _text(row: InspectionRow, name: str) -> str:
        if name == "Time":
            return local_time(row.created_at)
        if name == "File":
            return row.file_name or ""
        if name == "Product":
            return row.product_name or "—"
        if name == "Verdict":
            return row.verdict
        if name == "Score":
            return f"{row.score:.3f}"
        if name == "Position":
            return row.position or "—"
        if name == "Defect types":
            return describe_defect_types(row.defect_types, TYPES_IN_CELL) or "—"
        if name == "Decision":
            return describe_decision(row.operator_decision)
        if name == "Latency (ms)":
            return f"{row.latency_ms:.0f}"
        return str(row.id)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Ask for a database-side sort; columns the database cannot sort by are ignored."""
        key = COLUMNS[column][1] if 0 <= column < len(COLUMNS) else None
        if key is not None:
            self.sort_requested.emit(key, order == Qt.SortOrder.DescendingOrder)
