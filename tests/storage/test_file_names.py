"""Issue 12, problem 3: the inspected file's name is stored per inspection, searchable and exported."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from alembic import command
from sqlalchemy import create_engine, text

from iadgpt_desktop.storage import Database, InspectionFilter
from iadgpt_desktop.storage import repository as repo
from iadgpt_desktop.storage.export import export_csv, export_html
from tests.storage.conftest import make_record, migrating


def _store(db: Database, name: str, **overrides) -> int:
    image, sha = db.files.store_image(np.full((30, 40, 3), 128, np.uint8))
    mask = db.files.store_mask(np.zeros((30, 40), np.float32))
    with db.Session.begin() as s:
        return repo.add_inspection(s, make_record(file_name=name, image_path=image, image_sha256=sha,
                                                  mask_path=mask, **overrides))


def test_file_name_is_stored_and_found_by_search(db: Database) -> None:
    wanted = _store(db, "pitting_124.png", verdict="defective", defect_types=[("pitting", 0.9933)])
    _store(db, "good_007.png")
    with db.Session() as s:
        assert repo.get_inspection(s, wanted).file_name == "pitting_124.png"
        found = repo.query_inspections(s, InspectionFilter(text="pitting_124"))
    assert [r.id for r in found] == [wanted]


def test_csv_and_html_carry_file_names_words_and_local_times(db: Database, tmp_path: Path) -> None:
    _store(db, "pitting_124.png", verdict="defective", defect_types=[("pitting", 0.9933)])
    with db.Session() as s:
        export_csv(s, InspectionFilter(), tmp_path / "h.csv")
        export_html(s, InspectionFilter(), tmp_path / "h.html", db.files)
    rows = list(csv.DictReader((tmp_path / "h.csv").open(encoding="utf-8")))
    assert rows[0]["file_name"] == "pitting_124.png"
    page = (tmp_path / "h.html").read_text(encoding="utf-8")
    assert "pitting_124.png" in page
    assert "pitting 99 %" in page and "pitting:0.9933" not in page  # words with %, not raw scores
    assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d{6}", page), "no raw ISO times with microseconds"
    assert "Defect rate per day" in page  # the trend chart


def test_migration_from_the_first_schema_keeps_old_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with migrating(engine) as (conn, config):
        command.upgrade(config, "0001")
        conn.execute(text(
            "INSERT INTO inspections (created_at, source, image_path, image_sha256, width, height, score, "
            "score_top1, p_yes, verdict, answer, defect_types_json, model_id, mode, latency_ms) VALUES "
            "('2026-01-01 10:00:00.000000', 'folder:/x', 'images/a.png', 'aa', 4, 4, 0.1, 0.1, 0.1, 'good', "
            "'No.', '[]', 'm', 'zero-shot', 1.0)"))
    engine.dispose()
    with Database.open(tmp_path, url) as db, db.Session() as s:
        rows = repo.query_inspections(s, InspectionFilter())
    assert len(rows) == 1 and rows[0].file_name is None


def test_html_report_stays_small(db: Database, tmp_path: Path) -> None:
    """Issue 12: 137 rows made 2.7 MB (20 kB a row); JPEG overlays keep a row under 12 kB."""
    rng = np.random.default_rng(0)
    for i in range(20):
        image, sha = db.files.store_image((rng.random((184, 452, 3)) * 40 + 100).astype(np.uint8))
        mask = db.files.store_mask(rng.random((184, 452)).astype(np.float32))
        with db.Session.begin() as s:
            repo.add_inspection(s, make_record(file_name=f"p{i}.png", image_path=image, image_sha256=sha,
                                               mask_path=mask))
    with db.Session() as s:
        assert export_html(s, InspectionFilter(), tmp_path / "r.html", db.files) == 20
    assert (tmp_path / "r.html").stat().st_size / 20 < 12 * 1024
