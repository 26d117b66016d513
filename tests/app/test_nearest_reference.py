"""Few-shot mode shows, beside the inspected part, the good reference image most like it (issue 12).

With the built-in model (its pretrained image tower makes "most like" mean something; tiny-test's random
tower does not), a new product is onboarded from the shipped good references through the Products
view. A part that is a slightly changed copy of one reference must be shown next to that reference, by
name, also after a restart; a bank saved before reference indexes existed still inspects, without a
reference and without an error.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect

from iadgpt.imageio import load_image
from iadgpt.references import references_path
from iadgpt_desktop.storage import repository
from iadgpt_desktop.ui.main_window import MainWindow, sample_dir
from iadgpt_desktop.ui.reference_panel import NO_INDEX
from tests.app.conftest import emitted, start_station

REFERENCE_B = "good_030.png"  # B; the others (good_000.png is A) must not be named for a copy of it


def _few_shot_product(w: MainWindow, qtbot) -> dict:
    """A new product (a class the model was not trained on) onboarded from the shipped good references."""
    product_id = w.products.create_product("Drive housings", "magnetic_tile")
    with qtbot.waitSignal(w.products.references_checked, timeout=60000) as checked:
        w.products.add_references(sorted((sample_dir() / "reference").glob("*.png")))
    assert checked.args[2] >= 2
    emitted(qtbot, w.worker.product_changed, w.products.build_bank,
            lambda p: p.id == product_id and p.memory_bank_path)
    with w.db.Session() as s:
        row = next(p for p in repository.list_products(s) if p["id"] == product_id)
    assert row["mode"] == "few-shot" and Path(row["memory_bank_path"]).is_file()
    return row


def _changed_copy_of_b(folder: Path) -> Path:
    """Another shot of reference B: a little brighter and moved by a few pixels."""
    rgb = load_image(sample_dir() / "reference" / REFERENCE_B)
    h, w = rgb.shape[:2]
    brighter = np.clip(rgb.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    moved = cv2.warpAffine(brighter, np.float32([[1, 0, 4], [0, 1, 3]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part_b.png"
    cv2.imwrite(str(path), cv2.cvtColor(moved, cv2.COLOR_RGB2BGR))
    return path


def _inspect(w: MainWindow, qtbot, path: Path):
    (outcome,) = emitted(qtbot, w.worker.result, lambda: w.open_paths([path]))
    qtbot.waitUntil(lambda: w.live.outcome is outcome, timeout=10000)
    return outcome


def _restart(w: MainWindow, qtbot, product_id: int) -> MainWindow:
    """Close the station, start it again on the same data folder, and inspect with the product."""
    settings = w.settings
    w.close()
    again = start_station(qtbot, settings)
    again.products.select_product(product_id)
    emitted(qtbot, again.worker.product_changed, again.products.use_for_inspection, lambda p: p.id == product_id)
    return again


def _failures(w: MainWindow) -> list:
    failures: list = []
    w.worker.inspection_failed.connect(failures.append)
    w.worker.product_failed.connect(failures.append)
    return failures


def test_the_nearest_reference_of_a_changed_copy_of_b_is_b_shown_beside_it(builtin_station, qtbot, tmp_path) -> None:
    w = builtin_station
    _few_shot_product(w, qtbot)
    outcome = _inspect(w, qtbot, _changed_copy_of_b(tmp_path / "line"))
    nearest = outcome.nearest_reference
    assert nearest is not None and nearest.name == REFERENCE_B, f"matched {nearest}"
    live = w.live
    assert live.reference.isVisibleTo(w) and live.reference_toggle.isEnabled()
    assert live.reference.title.text() == f"Nearest good reference: {REFERENCE_B}"
    assert live.reference_name.text().startswith(REFERENCE_B)
    assert live.reference_name.textFormat() == live.reference.title.textFormat() == live.mode.textFormat()
    shown = live.reference.view.image()
    ref = load_image(sample_dir() / "reference" / REFERENCE_B)
    assert shown is not None and (shown.height(), shown.width()) == ref.shape[:2]
    # Beside the part, not over it: both images on screen at once, side by side, at the same height.
    part = QRect(live.view.mapTo(w, QPoint(0, 0)), live.view.size())
    beside = QRect(live.reference.view.mapTo(w, QPoint(0, 0)), live.reference.view.size())
    assert live.view.isVisibleTo(w) and beside.left() > part.right() and beside.width() > 100
    assert (beside.top(), beside.height()) == (part.top(), part.height())
    assert live.part_title.text() == f"Inspected: #{outcome.inspection_id} part_b.png"

    live.reference_toggle.setChecked(False)  # the operator wants the part alone
    assert not live.reference.isVisibleTo(w)
    live.reference_toggle.setChecked(True)
    assert live.reference.isVisibleTo(w)


def test_a_restart_keeps_the_nearest_reference(builtin_station, qtbot, tmp_path) -> None:
    row = _few_shot_product(builtin_station, qtbot)
    again = _restart(builtin_station, qtbot, row["id"])
    try:
        assert again.worker.inspector.references is not None  # read back from beside the bank
        outcome = _inspect(again, qtbot, _changed_copy_of_b(tmp_path / "line"))
        assert outcome.nearest_reference is not None and outcome.nearest_reference.name == REFERENCE_B
        assert again.live.reference.isVisibleTo(again)
        assert again.live.reference.title.text() == f"Nearest good reference: {REFERENCE_B}"
    finally:
        again.close()


def test_a_product_with_an_old_bank_shows_no_reference_and_no_error(builtin_station, qtbot, tmp_path) -> None:
    row = _few_shot_product(builtin_station, qtbot)
    references_path(row["memory_bank_path"]).unlink()  # a bank saved before reference indexes existed
    again = _restart(builtin_station, qtbot, row["id"])
    try:
        failures = _failures(again)
        assert again.worker.inspector.memory_bank is not None and again.worker.inspector.references is None
        outcome = _inspect(again, qtbot, _changed_copy_of_b(tmp_path / "line"))
        assert outcome.result.mode == "few-shot" and outcome.nearest_reference is None
        assert failures == []
        assert not again.live.reference.isVisibleTo(again) and not again.live.reference_toggle.isEnabled()
        assert again.live.reference_name.text() == NO_INDEX
    finally:
        again.close()


def test_a_reference_file_moved_away_is_named_but_not_drawn(builtin_station, qtbot, tmp_path) -> None:
    w = builtin_station
    _few_shot_product(w, qtbot)
    refs = w.worker.inspector.references
    moved = tmp_path / "gone" / REFERENCE_B
    index = [Path(s or "").name for s in refs.sources].index(REFERENCE_B)
    refs.sources = tuple(str(moved) if i == index else s for i, s in enumerate(refs.sources))
    outcome = _inspect(w, qtbot, _changed_copy_of_b(tmp_path / "line"))
    assert outcome.nearest_reference.path == str(moved) and outcome.reference_image is None
    assert w.live.reference.isVisibleTo(w) and w.live.reference.view.image() is None
    assert w.live.reference.title.text() == f"Nearest good reference: {REFERENCE_B}"


def test_the_stored_inspection_keeps_its_nearest_reference_for_history(builtin_station, qtbot, tmp_path) -> None:
    w = builtin_station
    _few_shot_product(w, qtbot)
    outcome = _inspect(w, qtbot, _changed_copy_of_b(tmp_path / "line"))
    nearest = outcome.nearest_reference
    assert outcome.inspection_id is not None and nearest is not None
    with w.db.Session() as s:
        row = repository.get_inspection(s, outcome.inspection_id)
    assert (row.reference_name, row.reference_path) == (REFERENCE_B, nearest.path)
    assert row.reference_similarity == pytest.approx(nearest.similarity)
    w.history.refresh()
    assert w.history.select_inspection(outcome.inspection_id)
    assert w.history.detail.fields["Reference"].text() == f"{REFERENCE_B} (similarity {nearest.similarity:.3f})"
