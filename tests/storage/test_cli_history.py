"""`iadgpt inspect --db` puts headless batch results into the desktop app's history."""

from __future__ import annotations

import cv2
import numpy as np

from iadgpt_desktop.cli import main
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.records import InspectionFilter


def test_inspect_with_db_stores_rows_images_and_masks(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"part_{i}.png"), (rng.random((60, 80)) * 255).astype(np.uint8))
    (tmp_path / "broken.png").write_text("no image")
    data = tmp_path / "station"
    code = main(["inspect", str(tmp_path), "--db", str(data), "--product", "housing", "--class", "metal_nut",
                 "--out", str(tmp_path / "out"), "--no-answer", "--json"])
    assert code == 1  # the broken file makes the batch exit non-zero; the others are still stored
    capsys.readouterr()
    with Database.open(data) as db, db.Session() as s:
        rows = repository.query_inspections(s, InspectionFilter(), limit=10)
        assert len(rows) == 3
        assert {r.product_name for r in rows} == {"housing"}
        for row in rows:
            assert db.files.path(row.image_path).is_file()
            mask = db.files.read_mask(row.mask_path)
            assert mask.shape == (60, 80)
            assert row.verdict in ("defective", "good") and row.source.startswith("cli:")
