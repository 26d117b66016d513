"""Products view: onboard and edit products (class, prompt bank, few-shot reference images).

The left side lists the products in the history database; the right side edits the selected one. A
memory bank is built by the inference worker, not here: this view only asks for it
(`build_bank_requested`, one step: build, store, inspect with it) and shows what the worker reports
(`bank_progress` per phase, `bank_ready`, `bank_failed`); the worker alone writes the product's bank
and mode. The reference images are stored with the product (they survive a restart) and shown as
thumbnails. Every database call is wrapped so a storage failure becomes a message, never a crash.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImageReader, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from iadgpt.errors import IADGPTError
from iadgpt.imageio import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from iadgpt.prompt_bank import GENERIC_CLASS, PromptBank, available_banks, load_bank, normalise_class_name
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.wording import counted
from iadgpt_desktop.ui.prompt_bank_editor import PromptBankEditor
from iadgpt_desktop.ui.reference_check import ReferenceCheck, ReferenceChecker, describe_refused
from iadgpt_desktop.workers.contract import BankBuilt, BankProgress, ModelStatus, ProductMode
from iadgpt_desktop.workers.inference import ProductInfo

log = logging.getLogger(__name__)

TRAINED, FEW_SHOT = ProductMode.TRAINED, ProductMode.FEW_SHOT
THUMB_PX = 72


def reference_thumbnail(path: str) -> QIcon:
    """A small icon of a reference image, decoded at thumbnail size (cheap for a folder of 160)."""
    reader = QImageReader(path)
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > THUMB_PX:
        reader.setScaledSize(size.scaled(THUMB_PX, THUMB_PX, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return QIcon(QPixmap.fromImage(image)) if not image.isNull() else QIcon()
ERROR_STYLE = "color:#c62828;"
INFO_STYLE = "color:#2e7d32;"
NO_DATABASE = ("The history database is not open, so products cannot be shown or saved. "
               "Choose a writable data folder or database in Settings > Storage.")


def _class_names() -> list[str]:
    """Classes with a shipped prompt bank; an empty list (logged) if the resources are missing."""
    try:
        return available_banks()
    except OSError:
        log.exception("cannot list the shipped prompt banks")
        return []


def _class_combo(current: str = "") -> QComboBox:
    combo = QComboBox()
    combo.setEditable(True)
    combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    combo.addItems(_class_names())
    combo.setCurrentText(current)
    combo.lineEdit().setPlaceholderText("a class with a shipped bank, or any name")
    return combo


class NewProductDialog(QDialog):
    """Asks for a new product's name and class."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New product")
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Bottle line 2")
        self.class_name = _class_combo(GENERIC_CLASS)
        form = QFormLayout()
        form.addRow("Name:", self.name)
        form.addRow("Class:", self.class_name)
        hint = QLabel("The class picks the shipped prompt bank; a class without one starts from the "
                      "generic bank, which you can edit.")
        hint.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.name.textChanged.connect(self._update_ok)
        self.class_name.currentTextChanged.connect(self._update_ok)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(self.buttons)
        self._update_ok()

    def _update_ok(self) -> None:
        ok = bool(self.name.text().strip() and self.class_name.currentText().strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def values(self) -> tuple[str, str]:
        return self.name.text().strip(), self.class_name.currentText().strip()


class ProductsView(QWidget):
    product_activated = Signal(object)  # ProductInfo
    build_bank_requested = Signal(object, list)  # ProductInfo as saved, reference image paths (str)
    cancel_bank_requested = Signal()
    references_checked = Signal(int, object, int)  # product id, ReferenceCheck, how many were added (0 for a build)

    def __init__(self, db_provider: Callable[[], Database | None], parent: QWidget | None = None, *,
                 max_pixels: Callable[[], int] = lambda: DEFAULT_MAX_PIXELS) -> None:
        """`max_pixels` gives the station's image size limit (Settings), which the model applies too."""
        super().__init__(parent)
        self._db_provider = db_provider
        self._max_pixels = max_pixels
        self._checker = ReferenceChecker(self)
        self._checker.checked.connect(self._references_checked)
        self._checking: dict[int, ProductInfo] = {}  # product id -> the build waiting for its references' check
        self._rows: dict[int, dict[str, Any]] = {}
        self._references: dict[int, list[str]] = {}  # per product, kept while the app runs
        self._bank_notes: dict[int, str] = {}  # "Memory bank: N patches from M images" per product
        self._building: dict[int, int] = {}  # product id -> number of images sent to the worker
        self._loading = False
        self._trained_classes: frozenset[str] | None = None  # classes the loaded model was trained on
        self._active: int | None = None  # the product being inspected

        self.products = QListWidget()
        self.products.currentItemChanged.connect(lambda *_: (self._clear_message(), self._show_selected()))
        new_button = QPushButton("New product…")
        new_button.clicked.connect(self._ask_new_product)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Products"))
        left_layout.addWidget(self.products, 1)
        left_layout.addWidget(new_button)

        self.editor = QWidget()
        editor_layout = QVBoxLayout(self.editor)
        editor_layout.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # a product name is shown as typed
        self.title.setStyleSheet("font-size:15px;font-weight:bold;")
        editor_layout.addWidget(self.title)
        editor_layout.addWidget(self._build_product_box())
        self.bank_editor = PromptBankEditor()
        self.bank_editor.reset_requested.connect(self.reset_bank)
        self.bank_table = self.bank_editor.table
        editor_layout.addWidget(self.bank_editor, 3)
        editor_layout.addWidget(self._build_references_box(), 2)
        editor_layout.addLayout(self._build_actions())

        self.message = QLabel()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.editor)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([260, 780])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.message)
        self.refresh()

    # -- layout ----------------------------------------------------------------------------------
    def _build_product_box(self) -> QGroupBox:
        box = QGroupBox("Product")
        self.class_combo = _class_combo()
        self.class_combo.currentTextChanged.connect(self._class_changed)
        self.trained_radio = QRadioButton("Trained model")
        self.few_shot_radio = QRadioButton("Few-shot from reference images")
        self.mode_group = QButtonGroup(self)
        self.mode_group.addButton(self.trained_radio)
        self.mode_group.addButton(self.few_shot_radio)
        self.trained_radio.setChecked(True)
        modes = QHBoxLayout()
        modes.addWidget(self.trained_radio)
        modes.addWidget(self.few_shot_radio)
        modes.addStretch(1)
        form = QFormLayout(box)
        form.addRow("Class:", self.class_combo)
        form.addRow("Mode:", modes)
        return box

    def _build_references_box(self) -> QGroupBox:
        box = QGroupBox("Reference images (good parts, for few-shot)")
        self.reference_list = QListWidget()
        self.reference_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.reference_list.setViewMode(QListWidget.ViewMode.IconMode)
        self.reference_list.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.reference_list.setGridSize(QSize(THUMB_PX + 24, THUMB_PX + 2 * self.fontMetrics().height()))
        self.reference_list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.reference_list.setMovement(QListWidget.Movement.Static)
        self.reference_list.setWordWrap(True)
        self.reference_count = QLabel()
        add_files = QPushButton("Add reference images…")
        add_files.clicked.connect(self._choose_reference_files)
        add_folder = QPushButton("Add folder…")
        add_folder.clicked.connect(self._choose_reference_folder)
        remove = QPushButton("Remove")
        remove.clicked.connect(self.remove_selected_references)
        self.build_button = QPushButton("Build memory bank and use it")
        self.build_button.setToolTip("Builds the few-shot memory bank from these images in the background, "
                                     "stores it with the product, and inspects this product with it")
        self.build_button.clicked.connect(self.build_bank)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.progress.setFormat("%p %")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_bank)
        self.bank_status = QLabel()
        self.bank_status.setTextFormat(Qt.TextFormat.PlainText)
        self.bank_status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (add_files, add_folder, remove):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.reference_count)
        bank_row = QHBoxLayout()
        bank_row.addWidget(self.build_button)
        bank_row.addWidget(self.progress, 1)
        bank_row.addWidget(self.cancel_button)
        bank_row.addWidget(self.bank_status, 1)
        layout = QVBoxLayout(box)
        layout.addWidget(self.reference_list, 1)
        layout.addLayout(buttons)
        layout.addLayout(bank_row)
        return box

    def _build_actions(self) -> QHBoxLayout:
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)
        self.use_button = QPushButton("Use for inspection")
        self.use_button.clicked.connect(self.use_for_inspection)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.save_button)
        row.addWidget(self.use_button)
        return row

    # -- messages --------------------------------------------------------------------------------
    def _error(self, text: str) -> None:
        self.message.setStyleSheet(ERROR_STYLE)
        self.message.setText(text)

    def _info(self, text: str) -> None:
        self.message.setStyleSheet(INFO_STYLE)
        self.message.setText(text)

    def _clear_message(self) -> None:
        """A new action starts: what was said about the last one no longer applies."""
        self.message.setText("")

    def _db(self) -> Database | None:
        try:
            db = self._db_provider()
        except Exception:  # noqa: BLE001 - the boundary: a broken provider must not take the view down
            log.exception("the database provider failed")
            db = None
        if db is None:
            self._error(NO_DATABASE)
        return db

    # -- products --------------------------------------------------------------------------------
    @property
    def product_id(self) -> int | None:
        item = self.products.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def refresh(self) -> None:
        """Reload the product list from the database and the editor, keeping the selection where possible."""
        self._reload(show=True)

    def _reload(self, show: bool) -> None:
        """Reload the list; with `show` False an unchanged selection keeps the editor (and unsaved edits)."""
        selected = self.product_id
        db = self._db()
        rows: list[dict[str, Any]] = []
        if db is not None:
            try:
                with db.Session() as s:
                    rows = repository.list_products(s)
            except Exception as exc:  # noqa: BLE001 - the boundary
                log.exception("listing products failed")
                self._error(f"The products could not be read: {exc}")
        self._rows = {row["id"]: row for row in rows}
        self.products.blockSignals(True)
        self.products.clear()
        for row in rows:
            if row.get("reference_paths_json") is not None or row["id"] not in self._references:
                self._references[row["id"]] = _stored_references(row)
            active = "  ● inspecting" if row["id"] == self._active else ""
            item = QListWidgetItem(f"{row['name']}\n{row['class_name']} · {row['mode']}{active}")
            item.setToolTip(f"{row['name']} ({row['class_name']}, {row['mode']}){active}")
            item.setData(Qt.ItemDataRole.UserRole, row["id"])
            self.products.addItem(item)
        self.products.blockSignals(False)
        target = selected if selected in self._rows else (rows[0]["id"] if rows else None)
        if show or target != selected:
            self.select_product(target)
        else:
            self._select_item(target)

    def _select_item(self, product_id: int | None) -> bool:
        for i in range(self.products.count()):
            item = self.products.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == product_id:
                self.products.blockSignals(True)
                self.products.setCurrentItem(item)
                self.products.blockSignals(False)
                return True
        return False

    def select_product(self, product_id: int | None) -> None:
        if not self._select_item(product_id):
            self.products.blockSignals(True)
            self.products.setCurrentItem(None)
            self.products.blockSignals(False)
        self._show_selected()

    def _ask_new_product(self) -> None:
        dialog = NewProductDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.create_product(*dialog.values())

    def create_product(self, name: str, class_name: str) -> int | None:
        """Create (or find) the product called `name` and select it; its id, or None on failure."""
        name, class_name = name.strip(), normalise_class_name(class_name) or GENERIC_CLASS
        if not name:
            self._error("A product needs a name.")
            return None
        db = self._db()
        if db is None:
            return None
        try:
            with db.Session.begin() as s:
                existed = any(p["name"] == name for p in repository.list_products(s))
                product_id = repository.get_or_create_product(s, name, class_name)
                few_shot = not existed and not self.model_knows(class_name)
                if few_shot:  # the loaded model was not trained on this class: its good images teach it
                    repository.update_product(s, product_id, mode=FEW_SHOT.value)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("creating product %r failed", name)
            self._error(f"The product '{name}' could not be created: {exc}")
            return None
        self.refresh()
        self.select_product(product_id)
        if existed:
            self._info(f"A product called '{name}' already exists; it is selected.")
        elif few_shot:
            self._info(f"Created product '{name}' ({class_name}) in few-shot mode: the model was not trained on "
                       f"this class. Add 4 or more images of good parts, then “Build memory bank and use it”.")
        else:
            self._info(f"Created product '{name}' ({class_name}). Edit its prompt bank, then Save.")
        return product_id

    def _show_selected(self) -> None:
        row = self._rows.get(self.product_id) if self.product_id is not None else None
        self.editor.setEnabled(row is not None)
        self._loading = True
        try:
            if row is None:
                self.title.setText("No product selected: create one with “New product…”")
                self.class_combo.setCurrentText("")
                self.bank_editor.fill(None)
                self._show_references([])
                self.bank_status.setText("")
                return
            self.title.setText(row["name"])
            self.class_combo.setCurrentText(row["class_name"])
            (self.few_shot_radio if row["mode"] == FEW_SHOT else self.trained_radio).setChecked(True)
            self.bank_editor.fill(*self._stored_bank(row))
            self._show_references(self._references.get(row["id"], []))
            self._show_bank_status(row)
            self.progress.setVisible(row["id"] in self._building)
            self.cancel_button.setVisible(row["id"] in self._building)
            self.build_button.setEnabled(row["id"] not in self._building and bool(self._references.get(row["id"])))
        finally:
            self._loading = False

    def _show_bank_status(self, row: dict[str, Any]) -> None:
        if row["id"] in self._bank_notes:
            self.bank_status.setText(self._bank_notes[row["id"]])
        elif row.get("memory_bank_path"):
            self.bank_status.setText(f"Memory bank: {Path(row['memory_bank_path']).name}")
        else:
            self.bank_status.setText("No memory bank yet")

    # -- prompt bank -----------------------------------------------------------------------------
    def _stored_bank(self, row: dict[str, Any]) -> tuple[PromptBank | None, str]:
        """The product's own bank if it has one, else the shipped bank for its class; and which it is."""
        if row.get("prompt_bank_json"):
            try:
                bank = PromptBank.from_json(json.loads(row["prompt_bank_json"]), origin=f"of '{row['name']}'")
                return bank, "the product's own bank"
            except (ValueError, IADGPTError) as exc:
                self._error(f"The stored prompt bank of '{row['name']}' is damaged ({exc}); the shipped bank "
                            f"is shown instead. Save to replace it.")
        return self._shipped_bank(row["class_name"])

    def _shipped_bank(self, class_name: str) -> tuple[PromptBank | None, str]:
        try:
            bank = load_bank(class_name or GENERIC_CLASS)
        except (OSError, IADGPTError) as exc:
            self._error(f"No shipped prompt bank could be loaded for '{class_name}': {exc}")
            return None, ""
        shipped = bank.path is not None and bank.path.stem == normalise_class_name(class_name)
        return bank, "shipped bank" if shipped else "generic bank (no shipped bank for this class)"

    def reset_bank(self) -> None:
        self.bank_editor.fill(*self._shipped_bank(self.class_combo.currentText().strip()))
        self._info("The shipped bank is in the table; Save to keep it for this product.")

    def _class_changed(self, class_name: str) -> None:
        # A bank nobody has edited follows the class; an edited one is the user's and stays.
        if self._loading or self.bank_editor.edited or self.product_id is None:
            return
        row = self._rows.get(self.product_id)
        if row is not None and not row.get("prompt_bank_json"):
            self._loading = True
            try:
                self.bank_editor.fill(*self._shipped_bank(class_name.strip()))
            finally:
                self._loading = False

    # -- references ------------------------------------------------------------------------------
    def _choose_reference_files(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        paths, _ = QFileDialog.getOpenFileNames(self, "Reference images (good parts)", "",
                                                f"Images ({patterns})")
        if paths:
            self.add_references(paths)

    def _choose_reference_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of reference images (good parts)")
        if folder:
            self.add_references([folder])

    def add_references(self, paths: Iterable[str | Path]) -> None:
        """Check image files (folders are searched) in the background, then add the readable ones to the
        selected product's references; `references_checked` reports what was added and refused."""
        self._clear_message()
        product_id = self.product_id
        if product_id is None:
            self._error("Select or create a product before adding reference images.")
            return
        paths = [str(p) for p in paths]
        self._info(f"Checking {'the folder' if len(paths) == 1 and Path(paths[0]).is_dir() else 'the images'} …")
        self._checker.start(("add", product_id), paths, self._max_pixels())

    def _references_checked(self, token: tuple[str, int], check: ReferenceCheck) -> None:
        kind, product_id = token
        if kind == "build":
            self._build_checked(product_id, check)
            return
        current = self._references.setdefault(product_id, [])
        new = [f for f in check.readable if f not in current]
        current.extend(new)
        if new:
            self._store_references(product_id)
        if product_id == self.product_id:
            self._show_references(current)
        already = len(check.readable) - len(new)
        added = f"Added {counted(len(new), 'reference image')}" + (f" ({already:,} already listed)" if already else "")
        if check.refused:
            self._error(f"{added}. Not added, {counted(len(check.refused), 'file')} that cannot be read:\n"
                        + describe_refused(check.refused))
        elif not check.found:
            self._error("No images were found there (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ").")
        else:
            self._info(f"{added}.")
        self.references_checked.emit(product_id, check, len(new))

    def remove_selected_references(self) -> None:
        self._clear_message()
        product_id = self.product_id
        if product_id is None:
            return
        chosen = {item.data(Qt.ItemDataRole.UserRole) for item in self.reference_list.selectedItems()}
        self._references[product_id] = [p for p in self._references.get(product_id, []) if p not in chosen]
        self._store_references(product_id)
        self._show_references(self._references[product_id])

    def _store_references(self, product_id: int) -> None:
        db = self._db()
        if db is None:
            return
        try:
            with db.Session.begin() as s:
                repository.update_product(s, product_id,
                                          reference_paths_json=json.dumps(self._references.get(product_id, [])))
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("storing the reference list failed")
            self._error(f"The reference list could not be saved (it is kept until the app closes): {exc}")

    def references(self) -> list[str]:
        return list(self._references.get(self.product_id, [])) if self.product_id is not None else []

    def _show_references(self, paths: list[str]) -> None:
        self.reference_list.clear()
        for p in paths:
            item = QListWidgetItem(reference_thumbnail(p), Path(p).name)
            item.setToolTip(p if Path(p).is_file() else f"{p} (missing)")
            item.setData(Qt.ItemDataRole.UserRole, p)
            self.reference_list.addItem(item)
        self.reference_count.setText(counted(len(paths), "reference image"))
        building = self.product_id in self._building
        self.build_button.setEnabled(bool(paths) and not building)

    # -- memory bank -----------------------------------------------------------------------------
    def model_knows(self, class_name: str) -> bool:
        """Whether the loaded model was trained on this class (unknown until a model reports: True)."""
        if self._trained_classes is None:
            return True
        return normalise_class_name(class_name) in self._trained_classes

    def set_model_status(self, status: ModelStatus) -> None:
        if status.model_id:
            self._trained_classes = frozenset(normalise_class_name(c) for c in status.trained_classes)

    def set_active(self, product: ProductInfo) -> None:
        """The worker now inspects this product (it says so after a switch or a bank build)."""
        self._active = product.id
        self._reload(show=False)

    def build_bank(self) -> None:
        """Save, check every reference image in the background, then ask the worker for the bank; a
        reference that went bad since it was added stops the build with all such files named at once."""
        self._clear_message()
        product_id = self.product_id
        paths = self.references()
        if product_id is None or not paths:
            self._error("Add reference images of good parts first, then build the memory bank.")
            return
        if not self.save(quiet=True):
            return
        row = self._rows[product_id]
        info = ProductInfo(id=row["id"], name=row["name"], class_name=row["class_name"], mode=FEW_SHOT,
                           memory_bank_path=row.get("memory_bank_path"), prompt_bank_json=row.get("prompt_bank_json"))
        self._building[product_id] = len(paths)
        self._checking[product_id] = info
        self.build_button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy until the worker reports a total
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.bank_status.setText(f"Checking the {len(paths)} reference images …")
        self._checker.start(("build", product_id), paths, self._max_pixels())

    def _build_checked(self, product_id: int, check: ReferenceCheck) -> None:
        info = self._checking.pop(product_id, None)
        if info is None:
            return  # cancelled while its references were checked
        self.references_checked.emit(product_id, check, 0)
        if check.refused:
            self._building.pop(product_id, None)
            if product_id == self.product_id:
                self._select_references({p for p, _ in check.refused})
                self.progress.setVisible(False)
                self.cancel_button.setVisible(False)
                self.build_button.setEnabled(bool(self.references()))
                self.bank_status.setText("Memory bank not built; the previous setup is kept")
            n = len(check.refused)
            self._error(f"The memory bank was not built: {n} of the {check.found} reference images cannot be read "
                        f"(selected in the list: press Remove to drop them, or fix the files and build again):\n"
                        + describe_refused(check.refused))
            return
        if product_id == self.product_id:
            self.bank_status.setText(f"Waiting for the model to read {len(check.readable)} images …")
        self._info("Building the memory bank in the background; inspection goes on with the current setup "
                   "until it is ready.")
        self.build_bank_requested.emit(info, check.readable)

    def _select_references(self, paths: set[str]) -> None:
        self.reference_list.clearSelection()
        for i in range(self.reference_list.count()):
            item = self.reference_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) in paths:
                item.setSelected(True)

    def cancel_bank(self) -> None:
        product_id = self.product_id
        if product_id in self._checking:  # not sent to the worker yet: nothing to stop there
            self._checking.pop(product_id)
            self.bank_failed(product_id, "building the memory bank was cancelled; the previous bank is kept")
            return
        self.cancel_button.setEnabled(False)
        self.bank_status.setText("Cancelling …")
        self.cancel_bank_requested.emit()

    def bank_progress(self, progress: BankProgress) -> None:
        if progress.product_id != self.product_id:
            return
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress.setRange(0, max(progress.total, 1))
        self.progress.setValue(min(progress.done, max(progress.total, 1)))
        self.bank_status.setText(f"{progress.phase.value.capitalize()}: {progress.done} of {progress.total}")

    def bank_ready(self, built: BankBuilt) -> None:
        """The worker built, stored and (if `active`) switched to the bank: only show it."""
        images = self._building.pop(built.product_id, len(self._references.get(built.product_id, [])))
        note = f"Memory bank: {built.patches} patches from {images} images"
        self._bank_notes[built.product_id] = note
        if built.active:
            self._active = built.product_id
        self._reload(show=False)  # keep unsaved prompt-bank edits in the editor
        if built.product_id == self.product_id:
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
            self.few_shot_radio.setChecked(True)
            self.bank_status.setText(note)
            self.build_button.setEnabled(bool(self.references()))
        name = self._rows.get(built.product_id, {}).get("name", f"#{built.product_id}")
        self._info(f"{note}. '{name}' is now inspected in few-shot mode, from the next image on.")

    def bank_failed(self, product_id: int, message: str) -> None:
        self._building.pop(product_id, None)
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.build_button.setEnabled(bool(self.references()))
        self.bank_status.setText("Memory bank not built; the previous setup is kept")
        self._error(f"The memory bank could not be built: {message}")

    # -- save and use ----------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return FEW_SHOT if self.few_shot_radio.isChecked() else TRAINED

    def save(self, quiet: bool = False) -> bool:
        """Validate the editor and store class, mode and prompt bank; False (with the reason shown) if not."""
        product_id = self.product_id
        if product_id is None:
            self._error("Select or create a product first.")
            return False
        class_name = normalise_class_name(self.class_combo.currentText())
        if not class_name:
            self._error("The product needs a class; choose one or type a name.")
            return False
        try:
            bank = self.bank_editor.bank(self.class_combo.currentText().strip())
        except IADGPTError as exc:
            self._error(f"Not saved: {exc}.")
            return False
        db = self._db()
        if db is None:
            return False
        try:
            with db.Session.begin() as s:
                repository.update_product(s, product_id, class_name=class_name, mode=self.mode,
                                          prompt_bank_json=json.dumps(bank.to_json(), ensure_ascii=False))
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("saving product %s failed", product_id)
            self._error(f"Not saved: {exc}")
            return False
        self._reload(show=False) if quiet else self.refresh()
        if not quiet:
            self._info(f"Saved '{self._rows[product_id]['name']}'." if product_id in self._rows else "Saved.")
        return True

    def use_for_inspection(self) -> None:
        """Save, then send the stored product to the inspection worker (few-shot needs a built bank)."""
        product_id = self.product_id
        if product_id is None or not self.save():
            return
        row = self._rows.get(product_id)
        if row is None:
            return
        if not can_inspect(row):
            self._error("Few-shot mode needs a memory bank: add reference images of good parts and press "
                        "“Build memory bank” first, or choose Trained model.")
            return
        self._info(f"Switching inspection to '{row['name']}' ({row['mode']}) …")
        self.product_activated.emit(product_info(row))


def product_info(row: dict[str, Any]) -> ProductInfo:
    """What the inspection worker needs of a stored product (a repository.list_products row)."""
    return ProductInfo(id=row["id"], name=row["name"], class_name=row["class_name"], mode=ProductMode(row["mode"]),
                       memory_bank_path=row.get("memory_bank_path"), prompt_bank_json=row.get("prompt_bank_json"))


def can_inspect(row: dict[str, Any]) -> bool:
    """A trained-mode product always can; a few-shot one needs its memory bank file."""
    bank_path = row.get("memory_bank_path")
    return row["mode"] != FEW_SHOT or bool(bank_path and Path(bank_path).is_file())


def _stored_references(row: dict[str, Any]) -> list[str]:
    try:
        paths = json.loads(row.get("reference_paths_json") or "[]")
    except ValueError:
        log.warning("the stored reference list of product %s is damaged; starting empty", row.get("id"))
        return []
    return [str(p) for p in paths if isinstance(p, str)]
