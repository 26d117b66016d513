"""Each few-shot inspection keeps the good reference it was compared with (revision 0004).

Stored and read back, the reference's name, path and similarity come back as they were; a database
created at the previous head (0003) upgrades in place, its rows reading with no reference; the
exports list the reference of each inspection.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import create_engine, text

from iadgpt.inspector import InspectionResult
from iadgpt.references import NearestReference
from iadgpt_desktop.storage import Database, InspectionFilter, InspectionRecord
from iadgpt_desktop.storage import repository as repo
from iadgpt_desktop.storage.db import DB_FILENAME
from iadgpt_desktop.storage.export import export_csv, export_html
from tests.storage.conftest import insert_at_revision_0003, make_record, migrating

PREVIOUS_HEAD = "0003_batch_claims"


def _few_shot_result(nearest: NearestReference | None) -> InspectionResult:
    return InspectionResult(
        image=None, image_size=(48, 64), class_name="tile", score=0.8, score_top1=0.7, verdict="defective",
        p_yes=0.9, answer="Yes.", position="top left", regions=[], defect_types=[("crack", 1.0)],
        anomaly_map=np.zeros((48, 64), np.float32), mode="few-shot", model_id="builtin", nearest_reference=nearest)


def test_a_few_shot_inspection_stored_and_read_back_keeps_its_reference(db: Database) -> None:
    nearest = NearestReference(index=3, name="good_030.png", path="/refs/tiles/good_030.png", similarity=0.98213)
    record = InspectionRecord.from_result(_few_shot_result(nearest), source="file", image_path="images/a.png",
                                          image_sha256="b" * 64, mask_path=None)
    with db.Session.begin() as s:
        iid = repo.add_inspection(s, record)
        plain = repo.add_inspection(s, InspectionRecord.from_result(
            _few_shot_result(None), source="file", image_path="images/b.png", image_sha256="c" * 64, mask_path=None))
    db.close()
    with Database.open(db.files.root) as again, again.Session() as s:  # a restart reads the same
        row, other = repo.get_inspection(s, iid), repo.get_inspection(s, plain)
    assert row is not None and other is not None
    assert (row.reference_name, row.reference_path) == ("good_030.png", "/refs/tiles/good_030.png")
    assert row.reference_similarity == pytest.approx(0.98213)
    assert (other.reference_name, other.reference_path, other.reference_similarity) == (None, None, None)


def test_a_database_at_the_previous_head_upgrades_and_its_rows_have_no_reference(tmp_path: Path) -> None:
    data = tmp_path / "station"
    data.mkdir()
    engine = create_engine(f"sqlite:///{data / DB_FILENAME}")
    with migrating(engine) as (conn, config):
        command.upgrade(config, PREVIOUS_HEAD)
        insert_at_revision_0003(conn)
    engine.dispose()

    with Database.open(data) as db:  # opening upgrades to head
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004_nearest_reference"
        with db.Session.begin() as s:
            [old] = repo.query_inspections(s, InspectionFilter())
            new = repo.add_inspection(s, make_record(mode="few-shot", reference_name="good_000.png",
                                                     reference_path="/refs/good_000.png", reference_similarity=0.9))
        with db.Session() as s:
            assert repo.get_inspection(s, new).reference_name == "good_000.png"
    assert old.file_name == "old_part.png" and old.verdict == "defective"
    assert (old.reference_name, old.reference_path, old.reference_similarity) == (None, None, None)


def test_downgrading_to_the_previous_head_drops_only_the_reference_columns(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with migrating(engine) as (conn, config):
        command.upgrade(config, "head")
        insert_at_revision_0003(conn)
        command.downgrade(config, PREVIOUS_HEAD)
        columns = {c[1] for c in conn.execute(text("PRAGMA table_info(inspections)"))}
        assert not columns & {"reference_name", "reference_path", "reference_similarity"}
        assert conn.execute(text("SELECT file_name FROM inspections")).scalar() == "old_part.png"
        command.upgrade(config, "head")
    engine.dispose()


def test_the_exports_list_each_inspections_reference(db: Database, tmp_path: Path) -> None:
    with db.Session.begin() as s:
        repo.add_inspection(s, make_record(mode="few-shot", reference_name="good_030.png",
                                           reference_path="/refs/good_030.png", reference_similarity=0.98213))
        repo.add_inspection(s, make_record(image_sha256="e" * 64))
    with db.Session() as s:
        export_csv(s, InspectionFilter(), tmp_path / "out.csv")
        export_html(s, InspectionFilter(), tmp_path / "out.html", db.files)
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["reference_name"], r["reference_path"]) for r in rows] == [("good_030.png", "/refs/good_030.png"),
                                                                          ("", "")]
    assert float(rows[0]["reference_similarity"]) == pytest.approx(0.98213) and rows[1]["reference_similarity"] == ""
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert "<th>Reference</th>" in page and "<td>good_030.png (similarity 0.982)</td>" in page
