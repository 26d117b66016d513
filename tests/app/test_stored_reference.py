"""A stored few-shot inspection shown again names the good reference it was compared with.

History's detail and the stored results Live shows (a reopened folder's earlier results) read the
reference's name and similarity from the database; Live draws the reference beside the part while its
file is still where the product's reference set had it, and says "(file no longer there)" once it is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt_desktop.storage import Database, repository
from iadgpt_desktop.ui.history_view import HistoryView
from iadgpt_desktop.ui.live_view import LiveView
from iadgpt_desktop.workers.stored import outcome_from_row
from tests.app.test_history_view import record, store_files

SHOWN = "good_030.png (similarity 0.982)"


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[tuple[Database, int, Path]]:
    """A history holding one few-shot inspection whose nearest reference is a file under tmp_path."""
    reference = tmp_path / "references" / "good_030.png"
    reference.parent.mkdir()
    cv2.imwrite(str(reference), np.full((40, 50, 3), 200, np.uint8))
    db = Database.open(tmp_path / "data")
    image, mask = store_files(db)
    with db.Session.begin() as s:
        iid = repository.add_inspection(s, record(
            image, mask, verdict="defective", mode="few-shot", file_name="part_7.png",
            reference_name="good_030.png", reference_path=str(reference), reference_similarity=0.98213))
    yield db, iid, reference
    db.close()


def _live_shows(qtbot, db: Database, iid: int) -> LiveView:
    with db.Session() as s:
        row = repository.get_inspection(s, iid)
    view = LiveView()
    qtbot.addWidget(view)
    view.resize(1300, 800)
    view.show()
    view.show_earlier([outcome_from_row(row, db.files)], after=None)
    return view


def _history_detail(qtbot, db: Database, iid: int) -> str:
    history = HistoryView(lambda: db)
    qtbot.addWidget(history)
    assert history.select_inspection(iid)
    return history.detail.fields["Reference"].text()


def test_history_detail_shows_the_stored_reference(qtbot, stored) -> None:
    db, iid, _ = stored
    assert _history_detail(qtbot, db, iid) == SHOWN


def test_a_stored_result_in_live_shows_its_reference_beside_the_part(qtbot, stored) -> None:
    db, iid, reference = stored
    view = _live_shows(qtbot, db, iid)
    assert view.outcome.nearest_reference.path == str(reference)
    assert view.reference_name.text() == SHOWN
    assert view.reference.isVisible() and view.reference.title.text() == "Nearest good reference: good_030.png"
    shown = view.reference.view.image()
    assert shown is not None and (shown.height(), shown.width()) == (40, 50)


def test_a_stored_result_whose_reference_file_was_deleted_says_so(qtbot, stored) -> None:
    db, iid, reference = stored
    reference.unlink()
    assert _history_detail(qtbot, db, iid) == f"{SHOWN} (file no longer there)"
    view = _live_shows(qtbot, db, iid)
    assert view.reference_name.text() == f"{SHOWN} (file no longer there)"
    assert view.outcome.reference_image is None and view.reference.view.image() is None
    assert view.outcome.from_history.problem == "", "the part's own image and map still show in full"


def test_a_row_stored_without_a_reference_says_none_was_recorded(qtbot, stored) -> None:
    db, _, _ = stored
    image, mask = store_files(db)
    with db.Session.begin() as s:
        old = repository.add_inspection(s, record(image, mask, mode="few-shot"))
    assert _history_detail(qtbot, db, old) == "— (none recorded with this inspection)"
    view = _live_shows(qtbot, db, old)
    assert view.reference_name.text() == "– (none recorded with this inspection)"
    assert not view.reference.isVisible()
