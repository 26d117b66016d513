"""The history view against a real SQLite history in tmp_path: filters, paging, sorting, detail, exports, trend."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from iadgpt_desktop.storage import Database, InspectionRecord, repository
from iadgpt_desktop.ui.history_model import PAGE_SIZE, local_time
from iadgpt_desktop.ui.history_view import HistoryView
from iadgpt_desktop.ui.trend_chart import TrendChart

DAY1 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
COLUMN = {"Time": 0, "File": 1, "Product": 2, "Verdict": 3, "Score": 4, "Position": 5, "Defect types": 6,
          "Decision": 7, "Latency (ms)": 8, "Id": 9}

# (day, hour, product, verdict, score, operator decision, position, defect types, answer)
INSPECTIONS = [
    (0, 8, "bottle", "good", 0.10, None, None, [], "No anomaly."),
    (0, 9, "bottle", "defective", 0.90, "confirmed", "top left", [("crack", 0.7)], "Yes, a crack at the top left."),
    (0, 10, "cable", "good", 0.20, None, None, [], "No anomaly."),
    (0, 11, "cable", "defective", 0.80, None, "center", [("cut", 0.6)], "Yes, a cut in the center."),
    (1, 8, "bottle", "defective", 0.70, "overridden_good", "bottom", [("contamination", 0.5)], "Yes, dirt."),
    (1, 9, "bottle", "good", 0.30, None, None, [], "No anomaly."),
    (1, 10, "cable", "good", 0.15, "confirmed", None, [], "No anomaly."),
    (2, 8, "cable", "defective", 0.95, "overridden_defective", "top right", [("scratch", 0.8), ("cut", 0.1)],
     "Yes, a scratch at the top right."),
    (2, 9, "bottle", "good", 0.05, None, None, [], "No anomaly."),
]


def record(image: tuple[str, str], mask: str | None, **overrides: Any) -> InspectionRecord:
    values: dict[str, Any] = {
        "source": "folder:/line1", "image_path": image[0], "image_sha256": image[1], "width": 64, "height": 48,
        "score": 0.5, "score_top1": 0.4, "p_yes": 0.3, "verdict": "good", "answer": "No anomaly.",
        "model_id": "tiny-test", "mode": "zero-shot", "latency_ms": 12.0, "created_at": DAY1, "mask_path": mask,
    }
    values.update(overrides)
    return InspectionRecord(**values)


def store_files(db: Database) -> tuple[tuple[str, str], str]:
    rgb = np.full((48, 64, 3), 90, np.uint8)
    rgb[5:20, 5:25] = (230, 230, 230)
    anomaly_map = np.zeros((48, 64), np.float32)
    anomaly_map[5:20, 5:25] = 1.0
    return db.files.store_image(rgb), db.files.store_mask(anomaly_map)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "data")
    image, mask = store_files(database)
    with database.Session.begin() as s:
        products = {name: repository.get_or_create_product(s, name, name) for name in ("bottle", "cable")}
        for day, hour, product, verdict, score, decision, position, types, answer in INSPECTIONS:
            at = DAY1.replace(hour=hour) + timedelta(days=day)
            iid = repository.add_inspection(s, record(
                image, mask, created_at=at, product_id=products[product], verdict=verdict, score=score,
                operator_decision=decision, position=position, defect_types=types, answer=answer,
                latency_ms=10.0 + hour))
            if score == 0.95:
                repository.add_message(s, iid, "user", "How large is the scratch?")
                repository.add_message(s, iid, "assistant", "About a tenth of the width.")
    yield database
    database.close()


@pytest.fixture
def view(qtbot, db: Database) -> HistoryView:
    widget = HistoryView(lambda: db)
    qtbot.addWidget(widget)
    widget.resize(1300, 800)
    return widget


def column(view: HistoryView, name: str) -> list[str]:
    model = view.model
    return [model.index(r, COLUMN[name]).data() for r in range(model.rowCount())]


def ids(view: HistoryView) -> list[int]:
    return [int(text) for text in column(view, "Id")]


def test_table_shows_every_inspection_newest_first(view: HistoryView) -> None:
    assert view.model.rowCount() == len(INSPECTIONS)
    assert view.model.columnCount() == 10
    assert column(view, "Time")[0] == local_time(DAY1.replace(hour=9) + timedelta(days=2))
    assert column(view, "Product")[0] == "bottle"
    assert column(view, "Verdict")[1] == "defective"
    assert column(view, "Score")[1] == "0.950"
    assert column(view, "Decision")[1] == "Overridden: defective"
    assert column(view, "Defect types")[1] == "scratch 80 %, cut 10 %"
    assert column(view, "Position")[1] == "top right"
    assert column(view, "Latency (ms)")[1] == "18"
    assert view.model.index(1, COLUMN["Verdict"]).data(Qt.ItemDataRole.ForegroundRole) is not None
    assert not view.message.isVisible()


def test_the_summary_under_a_decision_filter_says_what_the_operator_decided(view: HistoryView) -> None:
    """Filtered to parts the operator overrode to good, "1 defective" alone would read as the opposite."""
    view.decision.setCurrentIndex(view.decision.findData("overridden_good"))
    assert view.model.rowCount() == 1
    assert view.summary.text() == "1 inspection, 1 defective by the model, 0 after the operator's decisions"
    view.decision.setCurrentIndex(view.decision.findData("confirmed"))
    assert view.summary.text() == "2 inspections, 1 defective"  # confirmed: the counts agree


def test_filters_change_the_rows(view: HistoryView) -> None:
    view.verdict.setCurrentIndex(view.verdict.findData("defective"))
    assert view.model.rowCount() == 4
    assert set(column(view, "Verdict")) == {"defective"}

    view.product.setCurrentIndex(view.product.findText("bottle"))
    assert view.model.rowCount() == 2
    assert set(column(view, "Product")) == {"bottle"}

    view.verdict.setCurrentIndex(0)
    view.decision.setCurrentIndex(view.decision.findData("undecided"))
    assert column(view, "Decision") == ["Undecided"] * 3  # bottle: day 2 09h, day 1 09h, day 0 08h

    view.product.setCurrentIndex(0)
    view.decision.setCurrentIndex(view.decision.findData("confirmed"))
    assert sorted(column(view, "Score")) == ["0.150", "0.900"]

    view.decision.setCurrentIndex(0)
    view.search.setText("scratch")
    view.refresh()  # what the search box's debounce timer does
    assert column(view, "Score") == ["0.950"]

    view.search.setText("")
    view.set_time_range(DAY1 + timedelta(days=1), DAY1 + timedelta(days=2))  # day 2 only
    assert view.quick_range.currentText() == "Custom range"
    assert sorted(column(view, "Score")) == ["0.150", "0.300", "0.700"]

    view.quick_range.setCurrentText("All")
    assert view.model.rowCount() == len(INSPECTIONS)
    view.quick_range.setCurrentText("Last 24 h")  # the fixture's inspections are from 2024
    assert view.model.rowCount() == 0
    assert view.chart.points() == []


def test_search_box_is_debounced(qtbot, view: HistoryView) -> None:
    with qtbot.waitSignal(view.refreshed, timeout=2000) as blocker:
        view.search.setText("crack")
    assert blocker.args == [1]
    assert column(view, "Position") == ["top left"]


def test_header_click_sorts_in_the_database(qtbot, view: HistoryView) -> None:
    view.show()
    qtbot.waitExposed(view)
    header = view.table.horizontalHeader()

    def click(name: str) -> None:
        x = header.sectionViewportPosition(COLUMN[name]) + header.sectionSize(COLUMN[name]) // 2
        qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2))

    click("Score")
    scores = [float(s) for s in column(view, "Score")]
    descending = header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    assert scores == sorted(scores, reverse=descending)
    assert view._order_by == "score"
    click("Score")
    assert [float(s) for s in column(view, "Score")] == sorted(scores, reverse=not descending)

    click("Position")  # not sortable: rows and arrow stay as they were
    qtbot.wait(20)
    assert [float(s) for s in column(view, "Score")] == sorted(scores, reverse=not descending)
    assert header.sortIndicatorSection() == COLUMN["Score"]

    view.sort_by("latency_ms", descending=False)
    latencies = [int(t) for t in column(view, "Latency (ms)")]
    assert latencies == sorted(latencies)

    click("Id")  # the number the Live strip and the report show: sortable like the others
    first = ids(view)
    assert first in (sorted(first), sorted(first, reverse=True))
    assert header.sortIndicatorSection() == COLUMN["Id"]
    click("Id")
    assert ids(view) == first[::-1]


def test_selecting_a_row_shows_the_detail_and_emits(qtbot, view: HistoryView, db: Database) -> None:
    with qtbot.waitSignal(view.inspection_selected, timeout=1000) as blocker:
        view.table.selectRow(1)
    row, messages = blocker.args
    assert row.id == ids(view)[1]
    assert row.score == pytest.approx(0.95)
    assert [m.role for m in messages] == ["user", "assistant"]
    image = view.detail_image()
    assert image is not None and not image.isNull()
    assert (image.width(), image.height()) == (64, 48)
    # The overlay is drawn: the anomalous square is reddened, the rest is not.
    inside, outside = image.pixelColor(10, 10), image.pixelColor(50, 40)
    assert inside.red() > inside.blue() and outside.blue() >= outside.red()
    assert "0.9500" in view.detail.fields["Score"].text()
    assert "scratch" in view.detail.fields["Defect types"].text()
    assert "About a tenth of the width." in view.detail.conversation.toPlainText()
    assert "DEFECTIVE" in view.detail.banner.text()

    # A new inspection arrives: the refresh keeps the same inspection selected, without a second signal.
    with db.Session.begin() as s:
        repository.add_inspection(s, record(("images/x/none.png", "0" * 64), None,
                                            created_at=DAY1 + timedelta(days=3)))
    emitted: list[Any] = []
    view.inspection_selected.connect(lambda *args: emitted.append(args))
    view.refresh()
    assert view.model.rowCount() == len(INSPECTIONS) + 1
    assert view.table.currentIndex().row() == 2
    assert view._shown is not None and view._shown.id == row.id
    assert emitted == []


def _ask(db: Database, inspection_id: int, question: str, answer: str) -> None:
    """What the worker stores for one chat turn."""
    with db.Session.begin() as s:
        repository.add_message(s, inspection_id, "user", question)
        repository.add_message(s, inspection_id, "assistant", answer)


def test_questions_asked_after_selection_show_in_the_detail(qtbot, view: HistoryView, db: Database) -> None:
    view.show()
    with qtbot.waitSignal(view.inspection_selected, timeout=1000):
        view.table.selectRow(0)  # an inspection nobody has asked about yet
    shown = view.current_row().id
    assert "No follow-up questions were asked." in view.detail.conversation.toPlainText()

    _ask(db, shown, "where is the defect?", "At the top right.")
    view.conversation_stored(shown)  # the worker's chat_finished
    text = view.detail.conversation.toPlainText()
    assert "where is the defect?" in text and "At the top right." in text and "No follow-up" not in text

    _ask(db, shown, "how big?", "About a tenth of the width.")
    emitted: list[Any] = []
    view.inspection_selected.connect(lambda *args: emitted.append(args))
    view.refresh()  # a new result arrives: the same inspection stays selected and its conversation is re-read
    assert "how big?" in view.detail.conversation.toPlainText() and emitted == []

    _ask(db, shown, "what kind?", "A scratch.")
    view.hide()  # the operator is on the Live tab, chatting about it
    view.show()
    assert "what kind?" in view.detail.conversation.toPlainText()

    view.conversation_stored(shown + 1000)  # another inspection's conversation: nothing changes
    assert "what kind?" in view.detail.conversation.toPlainText()


def test_missing_image_file_shows_a_message(qtbot, view: HistoryView, db: Database) -> None:
    with db.Session.begin() as s:
        repository.add_inspection(s, record(("images/zz/gone.png", "1" * 64), "masks/zz/gone.png",
                                            created_at=DAY1 + timedelta(days=5)))
    view.refresh()
    with qtbot.waitSignal(view.inspection_selected, timeout=1000):
        view.table.selectRow(0)
    assert view.detail.image_stack.currentWidget() is view.detail.image_message
    assert "missing or unreadable" in view.detail.image_message.text()
    assert view.detail_image() is None
    view.table.selectRow(1)  # and the next one shows its image again
    assert view.detail.image_stack.currentWidget() is view.detail.image_view
    assert view.detail_image() is not None


def test_exports_write_the_filtered_rows(view: HistoryView, tmp_path: Path) -> None:
    view.verdict.setCurrentIndex(view.verdict.findData("defective"))
    csv_path = tmp_path / "out.csv"
    assert view.export_csv_to(csv_path) == 4
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["verdict"] for r in rows} == {"defective"}
    assert "4" in view.status.text()

    html_path = tmp_path / "report.html"
    assert view.export_html_to(html_path) == 4
    assert html_path.stat().st_size > 0

    bad = view.export_csv_to(tmp_path)  # a folder, not a file
    assert bad == -1 and view.message.isVisibleTo(view) and "Could not write the export" in view.message.text()


def test_a_failed_export_says_once_what_was_not_written(view: HistoryView, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("a file where the folder should be", encoding="utf-8")
    target = tmp_path / "a-file" / "x.csv"
    assert view.export_csv_to(target) == -1
    text = view.message.text()
    assert text.startswith(f"Could not write the export {target}: ") and "choose another folder" in text
    assert text.count(str(target)) == 1 and "not written" not in text  # the storage sentence, not a second one
    assert "[Errno" not in text  # the cause in words


def test_trend_chart_gets_one_point_per_day(view: HistoryView) -> None:
    assert view.trend_bucket() == "day"
    points = view.chart.points()
    assert [(t.date().isoformat(), total, bad) for t, total, bad in points] == [
        ("2024-05-01", 4, 2), ("2024-05-02", 3, 1), ("2024-05-03", 2, 1)]
    assert view.summary.text() == "9 inspections, 4 defective by the model, 3 after the operator's decisions"

    view.set_time_range(DAY1, DAY1 + timedelta(days=1))  # one day: hourly buckets
    assert view.trend_bucket() == "hour"
    assert [(t.hour, total, bad) for t, total, bad in view.chart.points()] == [
        (8, 1, 0), (9, 1, 1), (10, 1, 0), (11, 1, 1)]


@pytest.mark.parametrize("provider", [lambda: None, lambda: (_ for _ in ()).throw(RuntimeError("no disk"))],
                         ids=["none", "raising"])
def test_unavailable_database_shows_a_message(qtbot, provider) -> None:
    view = HistoryView(provider)
    qtbot.addWidget(view)
    assert view.message.isVisibleTo(view)
    assert view.message.text().startswith("History unavailable")
    assert view.model.rowCount() == 0
    view.verdict.setCurrentIndex(1)
    view.schedule_refresh()
    assert view.export_csv_to("/tmp/never-written.csv") == -1
    assert view.chart.points() == []


def test_database_failing_mid_use_keeps_the_view_working(qtbot, view: HistoryView, db: Database) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE inspections RENAME TO inspections_gone")
    view.refresh()
    assert view.message.isVisibleTo(view) and "History unavailable" in view.message.text()
    assert view.model.rowCount() == 0
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE inspections_gone RENAME TO inspections")
    view.refresh()
    assert not view.message.isVisibleTo(view)
    assert view.model.rowCount() == len(INSPECTIONS)


def test_schedule_refresh_coalesces_a_stream(qtbot, view: HistoryView, db: Database) -> None:
    view.show()
    qtbot.waitExposed(view)
    refreshes: list[int] = []
    view.refreshed.connect(refreshes.append)
    for i in range(30):
        with db.Session.begin() as s:
            repository.add_inspection(s, record(("images/x/none.png", "0" * 64), None,
                                                created_at=DAY1 + timedelta(days=4, seconds=i)))
        view.schedule_refresh()
    qtbot.waitUntil(lambda: bool(refreshes), timeout=2000)
    qtbot.wait(100)
    assert refreshes == [len(INSPECTIONS) + 30]

    view.hide()  # while nobody looks, a scheduled refresh waits until the view is shown
    view.schedule_refresh()
    qtbot.wait(700)
    assert len(refreshes) == 1
    view.show()
    assert len(refreshes) == 2


def test_twenty_thousand_rows_are_paged(qtbot, tmp_path: Path) -> None:
    db = Database.open(tmp_path / "big")
    image, mask = store_files(db)
    with db.Session.begin() as s:
        pid = repository.get_or_create_product(s, "bottle", "bottle")
        repository.add_inspections(s, [
            record(image, mask, product_id=pid, created_at=DAY1 + timedelta(minutes=i), score=(i % 100) / 100,
                   verdict="defective" if i % 4 == 0 else "good", answer=f"inspection {i}")
            for i in range(20_000)])
    try:
        view = HistoryView(lambda: db)
        qtbot.addWidget(view)
        assert view.model.rowCount() == 20_000
        assert view.model.cached_pages() == [0]  # opening reads one page, not 20,000 rows

        view.resize(1300, 800)
        view.show()
        qtbot.waitExposed(view)
        view.table.scrollToBottom()
        last_page = (20_000 - 1) // PAGE_SIZE
        qtbot.waitUntil(lambda: last_page in view.model.cached_pages(), timeout=3000)
        assert len(view.model.cached_pages()) <= 4  # only what was painted, not everything in between
        assert view.model.index(19_999, COLUMN["Time"]).data() == local_time(DAY1)

        view.verdict.blockSignals(True)
        view.verdict.setCurrentIndex(view.verdict.findData("defective"))
        view.verdict.blockSignals(False)
        view.refresh()
        QApplication.processEvents()
        assert view.model.rowCount() == 5_000

        view.sort_by("score", descending=True)
        assert view.model.index(0, COLUMN["Score"]).data() == "0.960"  # the highest defective score
    finally:
        db.close()


def test_trend_chart_paints_empty_and_full(qtbot) -> None:
    chart = TrendChart()
    qtbot.addWidget(chart)
    chart.resize(600, 160)
    assert not chart.grab().isNull()  # "No data"
    chart.set_data([(DAY1 + timedelta(days=d), 10 * (d + 1), d) for d in range(5)])
    assert chart.bucket() == "day"
    assert "150 inspections, 6.7 % defective" in chart.title()
    assert not chart.grab().isNull()
    chart.set_data([(DAY1 + timedelta(hours=h), 5, h % 3) for h in range(30)])
    assert chart.bucket() == "hour"
    assert "5 inspections" in chart._tooltip_at(chart._plot_rect().center().x())


def test_equal_type_shares_are_shown_without_percentages(qtbot, view: HistoryView, db: Database,
                                                          tmp_path: Path) -> None:
    """The built-in tower splits evenly among the types (no text tower): 50 % each would read as a probability."""
    with db.Session.begin() as s:
        repository.add_inspection(s, record(("images/x/even.png", "2" * 64), None, verdict="defective",
                                            created_at=DAY1 + timedelta(days=6),
                                            defect_types=[("pitting", 0.5), ("dent", 0.5)]))
    view.refresh()
    assert column(view, "Defect types")[0] == "pitting or dent"
    with qtbot.waitSignal(view.inspection_selected, timeout=1000):
        view.table.selectRow(0)
    assert view.detail.fields["Defect types"].text() == "pitting or dent"

    view.search.setText("even.png")
    view.refresh()
    assert view.export_csv_to(tmp_path / "even.csv") == 1
    with (tmp_path / "even.csv").open(newline="", encoding="utf-8") as f:
        assert next(csv.DictReader(f))["defect_types"] == "pitting; dent"
    assert view.export_html_to(tmp_path / "even.html") == 1
    page = (tmp_path / "even.html").read_text(encoding="utf-8")
    assert "pitting or dent" in page and "50 %" not in page
