"""History view: filter the stored inspections, page through them, look at one, export, and see the trend.

The table model is lazy: it knows only the row count and reads pages of PAGE_SIZE rows when the view
paints them, so a history of 100k inspections opens as fast as one of 100. Sorting is done by the
database (a re-query), never in Qt. Every database call is made here, at the UI boundary, inside a
try/except: a failing database shows a message and leaves the view usable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import QDateTime, Qt, QTimer, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.errors import StorageError
from iadgpt_desktop.storage.records import DECISIONS, UNDECIDED, VERDICTS, InspectionFilter, InspectionRow, MessageRow
from iadgpt_desktop.storage.wording import DECISION_LABELS, counted
from iadgpt_desktop.ui.history_model import (
    COLUMNS,
    InspectionTableModel,
    PageLoader,
)
from iadgpt_desktop.ui.inspection_detail import InspectionDetail
from iadgpt_desktop.ui.trend_chart import TrendChart
from iadgpt_desktop.workers.stored import read_picture

log = logging.getLogger(__name__)


def summary_text(summary: dict[str, int]) -> str:
    """"120 inspections, 7 defective"; where the operator's overrides change the count, both are said:
    "5 inspections, 5 defective by the model, 0 after the operator's decisions"."""
    total, defective, final = summary["total"], summary["defective"], summary["final_defective"]
    if not total:
        return counted(0, "inspection")
    inspections = counted(total, "inspection")
    if final == defective:
        return f"{inspections}, {defective:,} defective"
    return f"{inspections}, {defective:,} defective by the model, {final:,} after the operator's decisions"


COLUMN_NAMES = [name for name, _key in COLUMNS]

REFRESH_DELAY_MS = 500  # new inspections arriving refresh the view at most this often
SEARCH_DELAY_MS = 300  # typing in the search box waits this long for the next key
QUICK_RANGES: tuple[tuple[str, timedelta | None], ...] = (
    ("All", None),
    ("Last 24 h", timedelta(hours=24)),
    ("Last 7 days", timedelta(days=7)),
    ("Last 30 days", timedelta(days=30)),
    ("Custom range", None),
)
CUSTOM = "Custom range"
HOURLY_TREND_UP_TO = timedelta(days=2)


class HistoryView(QWidget):
    """Filterable, paged inspection history with a detail panel, exports and a defect-rate trend."""

    inspection_selected = Signal(object, list)  # InspectionRow, list[MessageRow]
    refreshed = Signal(int)  # the number of inspections the current filter selects

    def __init__(self, db_provider: Callable[[], Database | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._db_provider = db_provider
        self._order_by, self._descending = "created_at", True
        self._sort_column = 0
        self._products: list[tuple[int, str]] = []
        self._shown: InspectionRow | None = None
        self._stale = False

        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_DELAY_MS)
        self._refresh_timer.timeout.connect(self._scheduled_refresh)
        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("background:#fdecea;color:#b71c1c;padding:6px;border-radius:4px;")
        self.message.hide()
        self.model = InspectionTableModel(self)
        self.model.sort_requested.connect(self._sort)
        self.model.load_failed.connect(self._show_error)
        self.chart = TrendChart()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(self._build_filter_bar())
        layout.addWidget(self.message)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_table_side())
        self.detail = InspectionDetail()
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([760, 480])
        layout.addWidget(splitter, 1)
        self._show_detail(None)
        self.refresh()

    # ---- building --------------------------------------------------------------------------------

    def _build_filter_bar(self) -> QVBoxLayout:
        self.quick_range = QComboBox()
        for label, _ in QUICK_RANGES:
            self.quick_range.addItem(label)
        self.quick_range.setToolTip("Which time range to show; pick Custom range to set From and To yourself")
        now = QDateTime.currentDateTime()
        self.from_edit = self._date_edit(now.addDays(-7))
        self.to_edit = self._date_edit(now.addSecs(3600))
        self.product = QComboBox()
        self.product.addItem("All products", None)
        self.product.setMinimumContentsLength(10)
        self.product.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.verdict = QComboBox()
        self.verdict.addItem("All verdicts", None)
        for v in VERDICTS:
            self.verdict.addItem(v, v)
        self.decision = QComboBox()
        self.decision.addItem("All decisions", None)
        for d in (UNDECIDED, *DECISIONS):
            self.decision.addItem(DECISION_LABELS[d], d)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search file name, answer, position, defect type, note…")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(160)

        self.quick_range.currentIndexChanged.connect(self._quick_range_changed)
        self.from_edit.dateTimeChanged.connect(self._date_edited)
        self.to_edit.dateTimeChanged.connect(self._date_edited)
        for combo in (self.product, self.verdict, self.decision):
            combo.currentIndexChanged.connect(self.refresh)
        self.search.textChanged.connect(lambda _text: self._search_timer.start())
        self.search.returnPressed.connect(self.refresh)
        self._apply_quick_range()

        # Two rows, so that the History tab and the chat pane fit a 1366 px wide screen side by side.
        times = QHBoxLayout()
        times.addWidget(QLabel("Time"))
        times.addWidget(self.quick_range)
        times.addWidget(QLabel("From"))
        times.addWidget(self.from_edit)
        times.addWidget(QLabel("To"))
        times.addWidget(self.to_edit)
        times.addStretch(1)
        what = QHBoxLayout()
        what.addWidget(self.product)
        what.addWidget(self.verdict)
        what.addWidget(self.decision)
        what.addWidget(self.search, 1)
        bar = QVBoxLayout()
        bar.addLayout(times)
        bar.addLayout(what)
        return bar

    @staticmethod
    def _date_edit(value: QDateTime) -> QDateTimeEdit:
        edit = QDateTimeEdit(value)
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd HH:mm")
        return edit

    def _build_table_side(self) -> QWidget:
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        for column, width in enumerate((140, 150, 100, 72, 56, 150, 130, 110, 80, 56)):
            header.resizeSection(column, width)
        header.setSectionResizeMode(COLUMN_NAMES.index("Defect types"), QHeaderView.ResizeMode.Stretch)
        header.setSortIndicator(self._sort_column, Qt.SortOrder.DescendingOrder)
        self.table.setSortingEnabled(True)  # clicks reach model.sort, which re-queries the database
        # A click on a column the database cannot sort by moves the arrow back where the sort really is.
        header.sortIndicatorChanged.connect(lambda *_: QTimer.singleShot(0, self._restore_sort_indicator))
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)

        self.summary = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        export_csv = QPushButton("Export CSV…")
        export_csv.clicked.connect(self._choose_csv)
        export_html = QPushButton("Export HTML report…")
        export_html.clicked.connect(self._choose_html)
        actions = QHBoxLayout()
        actions.addWidget(self.summary)
        actions.addWidget(self.status, 1)
        actions.addWidget(export_csv)
        actions.addWidget(export_html)

        self.chart.setFixedHeight(170)
        side = QWidget()
        layout = QVBoxLayout(side)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(actions)
        layout.addWidget(self.chart)
        return side

    # ---- filters ---------------------------------------------------------------------------------

    def current_filter(self) -> InspectionFilter:
        """The filter the controls describe now (a quick range is measured back from this moment)."""
        start, end = self._time_range()
        text = self.search.text().strip() or None
        return InspectionFilter(start=start, end=end, product_id=self.product.currentData(),
                                verdict=self.verdict.currentData(), decision=self.decision.currentData(), text=text)

    def _time_range(self) -> tuple[datetime | None, datetime | None]:
        label = self.quick_range.currentText()
        if label == CUSTOM:
            return _to_utc(self.from_edit.dateTime()), _to_utc(self.to_edit.dateTime())
        span = dict(QUICK_RANGES).get(label)
        if span is None:
            return None, None
        # Open-ended so inspections arriving now still appear.
        return datetime.now(UTC) - span, None

    def set_time_range(self, start: datetime | None, end: datetime | None) -> None:
        """Show a custom range (None, None shows everything); refreshes."""
        if start is None and end is None:
            self.quick_range.setCurrentText("All")
            return
        for edit, value in ((self.from_edit, start), (self.to_edit, end)):
            if value is not None:
                edit.blockSignals(True)
                edit.setDateTime(QDateTime.fromSecsSinceEpoch(int(value.timestamp())))
                edit.blockSignals(False)
        if self.quick_range.currentText() == CUSTOM:
            self.refresh()
        else:
            self.quick_range.setCurrentText(CUSTOM)

    def trend_bucket(self) -> str:
        start, end = self._time_range()
        if start is None:
            return "day"
        return "hour" if (end or datetime.now(UTC)) - start <= HOURLY_TREND_UP_TO else "day"

    def _quick_range_changed(self, *_args: object) -> None:
        self._apply_quick_range()
        self.refresh()

    def _apply_quick_range(self) -> None:
        """Show the quick range in the From/To boxes (without refreshing)."""
        label = self.quick_range.currentText()
        span = dict(QUICK_RANGES).get(label)
        if span is not None:
            now = QDateTime.currentDateTime()
            for edit, value in ((self.from_edit, now.addSecs(-int(span.total_seconds()))), (self.to_edit, now)):
                edit.blockSignals(True)
                edit.setDateTime(value)
                edit.blockSignals(False)
        # Under "All" the dates mean nothing, so they are greyed out until Custom range is picked.
        for edit in (self.from_edit, self.to_edit):
            edit.setEnabled(label != "All")

    def _date_edited(self, *_args: object) -> None:
        if self.quick_range.currentText() != CUSTOM:
            self.quick_range.blockSignals(True)
            self.quick_range.setCurrentText(CUSTOM)
            self.quick_range.blockSignals(False)
        self.refresh()

    # ---- refreshing ------------------------------------------------------------------------------

    def schedule_refresh(self) -> None:
        """Refresh within REFRESH_DELAY_MS; many calls meanwhile (a stream of inspections) make one refresh."""
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _scheduled_refresh(self) -> None:
        if self.isVisible():
            self.refresh()
        else:
            self._stale = True  # nobody is looking: refresh when the view is shown again

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._stale:
            self.refresh()
        elif self._shown is not None:  # questions asked about it in the chat pane while this tab was hidden
            self.conversation_stored(self._shown.id)

    def refresh(self, *_args: object) -> None:
        """Re-query with the current filters and sort, keeping the selected inspection selected if it still matches."""
        self._refresh_timer.stop()
        self._search_timer.stop()
        self._stale = False
        selected = self._shown.id if self._shown is not None else None
        selected_row = self.table.currentIndex().row()
        db = self._database()
        if db is None:
            self._empty()
            return
        try:
            with db.Session() as s:
                self._set_products(repository.list_products(s))
                flt = self.current_filter()
                bucket = self.trend_bucket()
                summary = repository.summarize_inspections(s, flt)
                trend = repository.defect_rate_trend(s, flt, bucket)
        except Exception as exc:  # noqa: BLE001 - the UI boundary: say why, keep the view usable
            log.exception("refreshing the history failed")
            self._show_error(f"History unavailable: {exc}")
            self._empty()
            return
        self.message.hide()
        total = summary["total"]
        self.model.reset(total, self._page_loader(db, flt, self._order_by, self._descending))
        self.chart.set_data(trend, bucket)
        self._fit_name_columns()
        self.summary.setText(summary_text(summary))
        self._reselect(selected, selected_row)
        self.refreshed.emit(total)

    def _fit_name_columns(self) -> None:
        """File and Product as wide as their visible names need (within reason), so they are not cut."""
        header = self.table.horizontalHeader()
        metrics = self.table.fontMetrics()
        rows = min(self.model.rowCount(), 50)  # the first page only: sizing must not read the history
        for name in ("File", "Product"):
            column = COLUMN_NAMES.index(name)
            texts = [str(self.model.index(r, column).data() or "") for r in range(rows)]
            wanted = max([metrics.horizontalAdvance(t) for t in texts] + [header.sectionSizeHint(column)])
            header.resizeSection(column, min(max(wanted + 16, 90), 240))

    @staticmethod
    def _page_loader(db: Database, flt: InspectionFilter, order_by: str, descending: bool) -> PageLoader:
        def load(offset: int, limit: int) -> list[InspectionRow]:
            with db.Session() as s:
                return repository.query_inspections(s, flt, offset=offset, limit=limit, order_by=order_by,
                                                    descending=descending)
        return load

    def _database(self) -> Database | None:
        try:
            db = self._db_provider()
        except Exception as exc:  # noqa: BLE001 - the UI boundary
            log.exception("the database could not be reached")
            self._show_error(f"History unavailable: {exc}")
            return None
        if db is None:
            self._show_error("History unavailable: no inspection database is open. Choose a data folder or "
                             "database in Settings > Storage.")
        return db

    def _empty(self) -> None:
        self.model.clear()
        self.chart.set_data([])
        self.summary.setText("")
        self._show_detail(None)

    def _show_error(self, text: str) -> None:
        self.message.setText(text)
        self.message.show()

    def _set_products(self, products: list[dict[str, Any]]) -> None:
        listed = [(int(p["id"]), str(p["name"])) for p in products]
        if listed == self._products:
            return
        current = self.product.currentData()
        self.product.blockSignals(True)
        self.product.clear()
        self.product.addItem("All products", None)
        for pid, name in listed:
            self.product.addItem(name, pid)
        self.product.setCurrentIndex(max(0, self.product.findData(current)))
        self.product.blockSignals(False)
        self._products = listed

    def _sort(self, order_by: str, descending: bool) -> None:
        self._sort_column = next(i for i, (_, key) in enumerate(COLUMNS) if key == order_by)
        if (order_by, descending) != (self._order_by, self._descending):
            self._order_by, self._descending = order_by, descending
            self.refresh()

    def _restore_sort_indicator(self) -> None:
        header = self.table.horizontalHeader()
        order = Qt.SortOrder.DescendingOrder if self._descending else Qt.SortOrder.AscendingOrder
        if (header.sortIndicatorSection(), header.sortIndicatorOrder()) != (self._sort_column, order):
            header.blockSignals(True)
            header.setSortIndicator(self._sort_column, order)
            header.blockSignals(False)
            header.viewport().update()

    def sort_by(self, order_by: str, descending: bool = True) -> None:
        """Sort as if the user clicked that column's header."""
        column = next(i for i, (_, key) in enumerate(COLUMNS) if key == order_by)
        order = Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
        self.table.sortByColumn(column, order)

    # ---- selection and detail --------------------------------------------------------------------

    def _reselect(self, inspection_id: int | None, near: int) -> None:
        self._restore_sort_indicator()
        row = self.model.find_row(inspection_id, max(near, 0)) if inspection_id is not None else -1
        if row < 0:
            self.table.clearSelection()
            self._show_detail(None)
            return
        self.table.selectRow(row)  # same id: _selection_changed refreshes the text only

    def _selection_changed(self, *_args: object) -> None:
        rows = self.table.selectionModel().selectedRows()
        row = self.model.row_at(rows[0].row()) if rows else None
        if row is None:
            if not rows:
                self._show_detail(None)
            return
        same = self._shown is not None and self._shown.id == row.id
        self._show_detail(row, reload_image=not same)
        messages = self._conversation(row.id)  # re-read on a refresh too: questions may have been asked since
        self.detail.show_conversation(row, messages)
        if same:
            return  # a refresh re-selected it: nothing new to tell the other views
        self.inspection_selected.emit(row, messages)

    def conversation_stored(self, inspection_id: int, *_args: object) -> None:
        """A question and its answer about `inspection_id` were stored: show them if it is the one shown.

        Connect the worker's `chat_finished` here; the detail is also re-read on every refresh and
        whenever the view is shown again."""
        if self._shown is not None and self._shown.id == inspection_id:
            self.detail.show_conversation(self._shown, self._conversation(inspection_id))

    def select_inspection(self, inspection_id: int) -> bool:
        """Select the inspection if it is among the loaded rows; True when it was found."""
        row = self.model.find_row(inspection_id, 0)
        if row >= 0:
            self.table.selectRow(row)
            self.table.scrollTo(self.model.index(row, 0))
        return row >= 0

    def current_row(self) -> InspectionRow | None:
        """The inspection shown in the detail (what the operator reads on this tab)."""
        return self._shown

    def current_messages(self) -> list[MessageRow]:
        return self._conversation(self._shown.id) if self._shown is not None else []

    def _conversation(self, inspection_id: int) -> list[MessageRow]:
        db = self._database()
        if db is None:
            return []
        try:
            with db.Session() as s:
                return repository.get_conversation(s, inspection_id)
        except Exception as exc:  # noqa: BLE001 - the UI boundary
            log.exception("reading the conversation of inspection %d failed", inspection_id)
            self._show_error(f"History unavailable: the conversation could not be read: {exc}")
            return []

    def _show_detail(self, row: InspectionRow | None, reload_image: bool = True) -> None:
        self._shown = row
        self.detail.show_row(row)
        if row is not None and reload_image:
            self._load_image(row)

    def _load_image(self, row: InspectionRow) -> None:
        db = self._database()
        if db is None:
            self.detail.show_image_problem("The image cannot be shown: no inspection database is open.")
            return
        try:
            image, anomaly_map, note = read_picture(db.files, row)
        except Exception as exc:  # noqa: BLE001 - a moved or deleted file must not break the view
            log.warning("image of inspection %d unavailable: %s", row.id, exc)
            self.detail.show_image_problem(f"The image of inspection #{row.id} is missing or unreadable.\n\n{exc}")
            return
        self.detail.set_image(image, anomaly_map, note)

    def detail_image(self) -> QImage | None:
        """The image the detail panel shows now (None when there is none)."""
        return self.detail.image()

    # ---- exports ---------------------------------------------------------------------------------

    def export_csv_to(self, path: str | Path) -> int:
        """Write the inspections the current filter selects as CSV; the row count, or -1 when it failed (shown)."""
        from iadgpt_desktop.storage import export

        return self._export("CSV", path, lambda s, db, flt: export.export_csv(s, flt, Path(path)))

    def export_html_to(self, path: str | Path) -> int:
        """Write an HTML report of the current filter's inspections; the row count, or -1 when it failed (shown)."""
        from iadgpt_desktop.storage import export

        return self._export("HTML report", path,
                            lambda s, db, flt: export.export_html(s, flt, Path(path), db.files))

    def _export(self, what: str, path: str | Path, write: Callable[[Any, Database, InspectionFilter], int]) -> int:
        db = self._database()
        if db is None:
            return -1
        try:
            with db.Session() as s:
                rows = write(s, db, self.current_filter())
        except Exception as exc:  # noqa: BLE001 - the UI boundary
            log.exception("export to %s failed", path)
            if isinstance(exc, StorageError):  # its sentence names the file, the cause and the fix
                self._show_error(str(exc)[:1].upper() + str(exc)[1:])
            else:
                self._show_error(f"The {what} was not written to {path}: {exc}")
            self.status.setText(f"{what} export failed")
            return -1
        self.status.setText(f"Exported {counted(rows, 'inspection')} to {Path(path).name}")
        self.status.setToolTip(str(path))
        return rows

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export inspections as CSV", "inspections.csv",
                                              "CSV files (*.csv)")
        if path:
            self.export_csv_to(path)

    def _choose_html(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export an HTML report", "inspection-report.html",
                                              "HTML files (*.html *.htm)")
        if path:
            self.export_html_to(path)


def _to_utc(value: QDateTime) -> datetime:
    return datetime.fromtimestamp(value.toSecsSinceEpoch(), tz=UTC)
