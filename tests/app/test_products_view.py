"""Products view against a real SQLite history in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTableWidgetItem

from iadgpt.prompt_bank import PromptBank, load_bank
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.ui.products_view import ProductsView
from iadgpt_desktop.workers.contract import BankBuilt, BankPhase, BankProgress
from iadgpt_desktop.workers.inference import ProductInfo


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "data")
    yield database
    database.close()


@pytest.fixture
def view(qtbot, db: Database) -> ProductsView:
    widget = ProductsView(lambda: db)
    qtbot.addWidget(widget)
    widget.resize(1100, 720)
    return widget


def stored(db: Database, product_id: int) -> dict:
    with db.Session() as s:
        return next(p for p in repository.list_products(s) if p["id"] == product_id)


def add(view: ProductsView, qtbot, paths) -> int:
    """Add references and wait for their check (off the GUI thread); how many were added."""
    with qtbot.waitSignal(view.references_checked, timeout=10000) as blocker:
        view.add_references(paths)
    return blocker.args[2]


def write_pngs(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"good_{i}.png"
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_created_product_is_listed_with_the_shipped_bank(view: ProductsView, db: Database) -> None:
    product_id = view.create_product("Bottle line 2", "bottle")
    assert product_id is not None
    assert view.products.count() == 1
    assert "Bottle line 2" in view.products.item(0).text()
    assert view.product_id == product_id
    assert stored(db, product_id)["class_name"] == "bottle"
    shipped = load_bank("bottle")
    assert view.bank_table.rowCount() == len(shipped.attributes)
    assert view.bank_table.item(0, 0).text() == shipped.attributes[0].name
    # The same name again selects the existing product instead of making a second one.
    assert view.create_product("Bottle line 2", "carpet") == product_id
    assert view.products.count() == 1


def test_edited_bank_is_saved_as_valid_json(view: ProductsView, db: Database) -> None:
    product_id = view.create_product("Leather A", "leather")
    view.bank_table.item(0, 1).setText("Scuffs: An abnormal leather might have shiny scuffed patches.")
    view.bank_editor.add_row()
    row = view.bank_table.rowCount() - 1
    view.bank_table.setItem(row, 0, QTableWidgetItem("ink"))
    view.bank_table.setItem(row, 1, QTableWidgetItem("Ink: An abnormal leather might have ink stains."))
    assert view.save()
    text = stored(db, product_id)["prompt_bank_json"]
    bank = PromptBank.from_json(json.loads(text))
    assert bank.class_name == "leather"
    assert bank.sentences[0] == "Scuffs: An abnormal leather might have shiny scuffed patches."
    assert bank.names[-1] == "ink"
    assert len(bank.attributes) == len(load_bank("leather").attributes) + 1
    # Reloading the product shows the stored bank, not the shipped one.
    view.refresh()
    assert view.bank_table.item(0, 1).text().startswith("Scuffs:")


def test_invalid_bank_is_not_saved(view: ProductsView, db: Database) -> None:
    product_id = view.create_product("Carpet", "carpet")
    view.bank_table.item(0, 1).setText("   ")
    assert not view.save()
    assert "Not saved" in view.message.text() and "sentence" in view.message.text()
    assert stored(db, product_id)["prompt_bank_json"] is None
    # No rows at all is refused as well.
    view.bank_table.selectAll()
    view.bank_editor.remove_selected_rows()
    assert view.bank_table.rowCount() == 0
    assert not view.save()
    assert "at least one defect sentence" in view.message.text()
    assert stored(db, product_id)["prompt_bank_json"] is None


def test_build_bank_round_trip(view: ProductsView, db: Database, qtbot, tmp_path: Path) -> None:
    product_id = view.create_product("Screws", "screw")
    paths = write_pngs(tmp_path / "refs", 3)
    assert not view.build_button.isEnabled()
    assert add(view, qtbot, paths[:2]) == 2
    assert add(view, qtbot, [str(tmp_path / "refs")]) == 1  # a folder adds only the new file
    assert view.reference_list.count() == 3
    assert view.reference_count.text() == "3 reference images"

    with qtbot.waitSignal(view.build_bank_requested, timeout=1000) as blocker:
        qtbot.mouseClick(view.build_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].id == product_id and blocker.args[0].mode == "few-shot"
    assert sorted(blocker.args[1]) == sorted(paths)
    assert not view.progress.isHidden()
    assert not view.build_button.isEnabled()

    view.bank_progress(BankProgress(product_id, BankPhase.SELECTING, 2, 3))
    assert (view.progress.maximum(), view.progress.value()) == (3, 2)
    assert "Choosing representative patches: 2 of 3" in view.bank_status.text()

    # What the worker (the one writer of a product's bank) does before it reports: store the file,
    # the path and the mode.
    bank_file = tmp_path / "data" / "memory_banks" / f"product-{product_id}.safetensors"
    bank_file.parent.mkdir(parents=True)
    bank_file.write_bytes(b"bank")
    with db.Session.begin() as s:
        repository.update_product(s, product_id, memory_bank_path=str(bank_file), mode="few-shot")
    view.bank_ready(BankBuilt(product_id, 1234, str(bank_file), active=True))
    assert view.bank_status.text() == "Memory bank: 1234 patches from 3 images"
    assert view.few_shot_radio.isChecked()
    assert stored(db, product_id)["mode"] == "few-shot"
    assert view.build_button.isEnabled()

    with qtbot.waitSignal(view.product_activated, timeout=1000) as blocker:
        qtbot.mouseClick(view.use_button, Qt.MouseButton.LeftButton)
    info = blocker.args[0]
    assert isinstance(info, ProductInfo)
    assert (info.id, info.name, info.class_name, info.mode) == (product_id, "Screws", "screw", "few-shot")
    assert info.memory_bank_path == str(bank_file)
    assert PromptBank.from_json(json.loads(info.prompt_bank_json)).class_name == "screw"


def test_bank_failure_is_shown(view: ProductsView, qtbot, tmp_path: Path) -> None:
    view.create_product("Pills", "pill")
    add(view, qtbot, write_pngs(tmp_path / "refs", 1))
    with qtbot.waitSignal(view.build_bank_requested, timeout=10000):
        view.build_bank()
    view.bank_failed(view.product_id, "the model is not loaded yet; wait for it, then try again")
    assert "not loaded yet" in view.message.text()
    assert view.build_button.isEnabled()


def test_use_for_inspection_trained_emits_edited_bank(view: ProductsView, qtbot) -> None:
    product_id = view.create_product("Tiles", "tile")
    view.class_combo.setCurrentText("carpet")
    view.bank_table.item(0, 0).setText("stain")
    with qtbot.waitSignal(view.product_activated, timeout=1000) as blocker:
        view.use_for_inspection()
    info = blocker.args[0]
    assert (info.id, info.class_name, info.mode, info.memory_bank_path) == (product_id, "carpet", "trained", None)
    bank = PromptBank.from_json(json.loads(info.prompt_bank_json))
    assert bank.class_name == "carpet" and bank.names[0] == "stain"


def test_few_shot_without_bank_warns_and_does_not_emit(view: ProductsView, qtbot) -> None:
    view.create_product("Hazelnuts", "hazelnut")
    view.few_shot_radio.setChecked(True)
    with qtbot.assertNotEmitted(view.product_activated):
        view.use_for_inspection()
    assert "memory bank" in view.message.text() and "Build memory bank" in view.message.text()


def test_class_change_follows_an_unedited_bank(view: ProductsView) -> None:
    view.create_product("Cable", "cable")
    view.class_combo.setCurrentText("zipper")
    assert view.bank_table.item(0, 0).text() == load_bank("zipper").attributes[0].name


def test_without_a_database_the_view_explains(qtbot) -> None:
    widget = ProductsView(lambda: None)
    qtbot.addWidget(widget)
    assert "Settings > Storage" in widget.message.text()
    assert widget.create_product("X", "bottle") is None
    assert not widget.editor.isEnabled()


def test_database_errors_become_messages(view: ProductsView, db: Database) -> None:
    view.create_product("Grid", "grid")
    with db.engine.begin() as connection:  # the table vanishes under the view
        connection.exec_driver_sql("ALTER TABLE products RENAME TO products_gone")
    assert not view.save()
    assert "Not saved" in view.message.text()
    view.refresh()
    assert "could not be read" in view.message.text()


def test_screenshot(view: ProductsView, qtbot, tmp_path: Path) -> None:
    view.create_product("Bottle line 2", "bottle")
    view.create_product("Leather A", "leather")
    add(view, qtbot, write_pngs(tmp_path / "refs", 4))
    view.show()
    with qtbot.waitSignal(view.build_bank_requested, timeout=10000):
        view.build_bank()
    view.bank_progress(BankProgress(view.product_id, BankPhase.READING, 2, 4))
    assert view.grab().save("/tmp/products_view.png")


# -- issue 12, problems 8 and 9 ------------------------------------------------------------------


def test_references_survive_a_restart_and_show_thumbnails(qtbot, db: Database, tmp_path: Path) -> None:
    first = ProductsView(lambda: db)
    qtbot.addWidget(first)
    product_id = first.create_product("Spindles", "ball_screw_drive")
    paths = write_pngs(tmp_path / "refs", 3)
    add(first, qtbot, paths)
    again = ProductsView(lambda: db)  # the app restarted
    qtbot.addWidget(again)
    again.select_product(product_id)
    assert again.references() == paths
    assert again.reference_list.count() == 3
    assert all(not again.reference_list.item(i).icon().isNull() for i in range(3)), "thumbnails"


def test_a_new_product_starts_few_shot_when_the_model_was_not_trained_on_it(view: ProductsView, db) -> None:
    from iadgpt_desktop.workers.contract import ModelState, ModelStatus

    view.set_model_status(ModelStatus(ModelState.READY, "ready", "demo@x", "zero-shot", True, ("ball_screw_drive",)))
    known = view.create_product("Line 1 spindles", "ball_screw_drive")
    new = view.create_product("Tiles", "magnetic_tile")
    assert stored(db, known)["mode"] == "trained"
    assert stored(db, new)["mode"] == "few-shot" and view.few_shot_radio.isChecked()
    assert "few-shot" in view.message.text() and "Build memory bank" in view.message.text()


def test_bank_build_is_one_step_with_cancel(view: ProductsView, qtbot, tmp_path: Path) -> None:
    product_id = view.create_product("Pills", "pill")
    add(view, qtbot, write_pngs(tmp_path / "refs", 2))
    assert "use it" in view.build_button.text()
    with qtbot.waitSignal(view.build_bank_requested, timeout=1000):
        view.build_bank()
    assert view.cancel_button.isVisible() or not view.cancel_button.isHidden()
    with qtbot.waitSignal(view.cancel_bank_requested, timeout=1000):
        view.cancel_button.click()
    view.bank_failed(product_id, "building the memory bank was cancelled; the previous bank is kept")
    assert view.cancel_button.isHidden() and "cancelled" in view.message.text()
    view.bank_ready(BankBuilt(product_id, 10, "x", active=True))
    assert "now inspected in few-shot mode" in view.message.text()
    assert "● inspecting" in view.products.currentItem().text()


def test_product_name_with_markup_is_shown_as_typed(view: ProductsView) -> None:
    name = "<b>Line</b><img src='/etc/hostname'>"
    view.create_product(name, "bottle")
    assert view.title.textFormat() == Qt.TextFormat.PlainText and view.title.text() == name
    assert view.message.textFormat() == Qt.TextFormat.PlainText


# -- QA: any file was accepted as a reference ------------------------------------------------------


def write_bad_files(folder: Path) -> dict[str, str]:
    """File name -> a word of the reason the loader gives for it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.png").write_text("not an image at all\n", encoding="utf-8")
    (folder / "zero.png").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "truncated.png")
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "huge.png")  # over the 1,000-pixel limit below
    return {"text.png": "text", "zero.png": "empty", "truncated.png": "truncated", "huge.png": "pixels"}


@pytest.fixture
def small_limit_view(qtbot, db: Database) -> ProductsView:
    widget = ProductsView(lambda: db, max_pixels=lambda: 1000)  # a 40x40 image is too large for it
    qtbot.addWidget(widget)
    widget.resize(1100, 720)
    return widget


def test_unreadable_files_are_not_added_and_each_is_named_with_its_reason(
        small_limit_view: ProductsView, db: Database, qtbot, tmp_path: Path) -> None:
    view = small_limit_view
    product_id = view.create_product("Tiles", "magnetic_tile")
    good = write_pngs(tmp_path / "mixed", 2)
    bad = write_bad_files(tmp_path / "mixed")
    with qtbot.waitSignal(view.references_checked, timeout=10000) as blocker:
        view.add_references([str(tmp_path / "mixed")])
    _, check, added = blocker.args
    assert added == 2 and sorted(check.readable) == sorted(good)
    assert sorted(Path(p).name for p, _ in check.refused) == sorted(bad)
    for path, reason in check.refused:
        assert path in reason and bad[Path(path).name] in reason, reason  # the loader's own sentence
    assert view.references() == sorted(good)
    assert view.reference_count.text() == "2 reference images"
    assert json.loads(stored(db, product_id)["reference_paths_json"]) == sorted(good)
    text = view.message.text()
    assert text.startswith("Added 2 reference images. Not added, 4 files that cannot be read:")
    assert all(name in text for name in bad)


def test_a_message_is_cleared_by_the_next_action(view: ProductsView, qtbot, tmp_path: Path) -> None:
    view.create_product("Tiles", "magnetic_tile")
    (tmp_path / "empty").mkdir()
    add(view, qtbot, [str(tmp_path / "empty")])
    assert view.message.text().startswith("No images were found there")
    assert add(view, qtbot, write_pngs(tmp_path / "refs", 3)) == 3
    assert view.message.text() == "Added 3 reference images."
    view.reference_list.item(0).setSelected(True)
    view.remove_selected_references()
    assert view.message.text() == ""


def test_files_gone_bad_after_adding_stop_the_build_and_are_all_named(
        view: ProductsView, qtbot, tmp_path: Path) -> None:
    view.create_product("Tiles", "magnetic_tile")
    paths = write_pngs(tmp_path / "refs", 4)
    assert add(view, qtbot, paths) == 4
    Path(paths[1]).write_bytes(Path(paths[1]).read_bytes()[:20])  # cut short by a copy
    Path(paths[3]).unlink()  # removed
    requested: list[object] = []
    view.build_bank_requested.connect(lambda *args: requested.append(args))
    with qtbot.waitSignal(view.references_checked, timeout=10000) as blocker:
        view.build_bank()
    check = blocker.args[1]
    assert [p for p, _ in check.refused] == [paths[1], paths[3]] and check.readable == [paths[0], paths[2]]
    assert requested == []
    text = view.message.text()
    assert text.startswith("The memory bank was not built: 2 of the 4 reference images cannot be read")
    assert paths[1] in text and paths[3] in text
    assert {i.data(Qt.ItemDataRole.UserRole) for i in view.reference_list.selectedItems()} == {paths[1], paths[3]}
    assert view.progress.isHidden() and view.build_button.isEnabled()
    view.remove_selected_references()  # Remove drops the bad ones, and the build goes ahead
    with qtbot.waitSignal(view.build_bank_requested, timeout=10000) as built:
        view.build_bank()
    assert built.args[1] == [paths[0], paths[2]]
