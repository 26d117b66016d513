"""Settings dialog: model preset and folders, device and precision, storage, station options.

It edits a copy of a frozen `Settings`; values it does not show (overlay options) pass through
unchanged. OK validates first and keeps the dialog open with the reason when something is wrong.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from iadgpt.config import builtin_presets
from iadgpt_desktop.settings import Settings, default_data_dir

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
MEGAPIXEL = 1_000_000
FP16_ON_CPU = "fp16 needs a CUDA GPU; choose fp32 or bf16 on the CPU"


def cuda_device_count() -> int:
    """How many CUDA GPUs torch sees; 0 without torch or CUDA. torch is imported only here (it is slow)."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken CUDA install must not stop the settings from opening
        log.exception("cannot count CUDA devices")
        return 0


def writable_problem(folder: Path) -> str | None:
    """Why the data folder cannot hold the history, images and masks, or None when it can.

    Checked by writing (and removing) a small file: permissions, a read-only mount and a full disk
    all show up the same way, as they would on the first inspection."""
    target = folder
    while not target.exists() and target.parent != target:
        target = target.parent  # a folder that does not exist yet is created inside its nearest parent
    if not target.is_dir():
        return f"Data folder {folder} is not a folder; choose a folder."
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".iadgpt-write-test-"):
            pass
    except OSError as exc:
        return (f"Data folder {folder} is not writable ({exc.strerror or exc}); choose a folder you can write "
                f"to, e.g. {default_data_dir()}.")
    return None


def _label(text: str) -> QLabel:
    # One width for every group's labels, so the fields of Model, Storage and Station line up.
    label = QLabel(text)
    label.setMinimumWidth(110)
    return label


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(600)
        self._original = settings

        self.preset = QComboBox()
        self.preset.setEditable(True)
        self.preset.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.preset.addItems(builtin_presets())
        self.preset.setCurrentText(settings.preset)
        self.preset.setToolTip("A built-in preset, or the path of a preset .json file")
        self.weights_dir = QLineEdit(settings.weights_dir)
        self.weights_dir.setPlaceholderText("empty = the preset's own weights")
        self.llm_dir = QLineEdit(settings.llm_dir)
        self.llm_dir.setPlaceholderText("empty = the preset's LLM folder")
        self.clip_weights = QLineEdit(settings.clip_weights)
        self.clip_weights.setPlaceholderText("empty = the preset's open_clip checkpoint")
        self.clip_weights.setToolTip("An open_clip checkpoint (open_clip_model.safetensors or open_clip_pytorch_model"
                                     ".bin), or the folder holding it")
        self.device = QComboBox()
        devices = list(DEVICES)
        count = cuda_device_count()
        if count > 1:
            devices += [f"cuda:{i}" for i in range(count)]
        if settings.device not in devices:  # keep a device saved on another machine visible
            devices.append(settings.device)
        self.device.addItems(devices)
        self.device.setCurrentText(settings.device)
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        if settings.precision not in PRECISIONS:
            self.precision.addItem(settings.precision)
        self.precision.setCurrentText(settings.precision)
        self.max_pixels = QSpinBox()
        self.max_pixels.setRange(1, 10_000)
        self.max_pixels.setSuffix(" MP")
        self.max_pixels.setToolTip("Larger images are refused rather than risk running out of memory")
        self.max_pixels.setValue(max(1, round(settings.max_pixels / MEGAPIXEL)))

        model = QGroupBox("Model")
        form = QFormLayout(model)
        form.addRow(_label("Preset:"), self._with_browse(self.preset, self._browse_preset))
        form.addRow(_label("Weights folder:"), self._folder_row(self.weights_dir))
        form.addRow(_label("LLM folder:"), self._folder_row(self.llm_dir))
        form.addRow(_label("CLIP weights:"), self._with_browse(self.clip_weights, self._browse_clip))
        form.addRow(_label("Device:"), self.device)
        form.addRow(_label("Precision:"), self.precision)
        form.addRow(_label("Largest image:"), self.max_pixels)

        self.data_dir = QLineEdit(settings.data_dir)
        self.data_dir.setPlaceholderText(f"empty = {default_data_dir()}")
        self.database_url = QLineEdit(settings.database_url)
        self.database_url.setPlaceholderText("empty = SQLite in the data folder; or e.g. postgresql://host/db")
        storage = QGroupBox("Storage")
        form = QFormLayout(storage)
        form.addRow(_label("Data folder:"), self._folder_row(self.data_dir))
        form.addRow(_label("Database URL:"), self.database_url)

        self.operator = QLineEdit(settings.operator)
        self.operator.setPlaceholderText("recorded with operator decisions")
        self.generate_answers = QCheckBox("Generate full answers for every inspection")
        self.generate_answers.setToolTip("Off: only the fast Yes/No verdict; answers are generated when you ask")
        self.generate_answers.setChecked(settings.generate_answers)
        self.alert_on_defective = QCheckBox("Beep and flash the verdict when a part is defective")
        self.alert_on_defective.setChecked(settings.alert_on_defective)
        station = QGroupBox("Station")
        form = QFormLayout(station)
        form.addRow(_label("Operator:"), self.operator)
        form.addRow(self.generate_answers)
        form.addRow(self.alert_on_defective)

        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color:#c62828;")
        self.error.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(model)
        layout.addWidget(storage)
        layout.addWidget(station)
        layout.addWidget(self.error)
        layout.addStretch(1)
        layout.addWidget(self.buttons)

    def _with_browse(self, field: QWidget, browse) -> QWidget:  # noqa: ANN001 - a slot
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(field, 1)
        button = QPushButton("Browse…")
        button.clicked.connect(browse)
        layout.addWidget(button)
        return row

    def _folder_row(self, field: QLineEdit) -> QWidget:
        return self._with_browse(field, lambda: self._browse_dir(field))

    def _browse_dir(self, field: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", field.text())
        if folder:
            field.setText(folder)

    def _browse_clip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "open_clip checkpoint", self.clip_weights.text(),
                                              "open_clip checkpoint (*.safetensors *.bin *.pt *.pth)")
        if path:
            self.clip_weights.setText(path)

    def _browse_preset(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Preset file", "", "Preset (*.json)")
        if path:
            self.preset.setCurrentText(path)

    def settings(self) -> Settings:
        """The values as edited (not validated; `validate` says what is wrong)."""
        megapixels = self.max_pixels.value()
        original = self._original.max_pixels
        # An untouched spin box keeps an exact byte count that is not a whole number of megapixels.
        max_pixels = original if megapixels == max(1, round(original / MEGAPIXEL)) else megapixels * MEGAPIXEL
        return dataclasses.replace(
            self._original,
            preset=self.preset.currentText().strip(),
            weights_dir=self.weights_dir.text().strip(),
            llm_dir=self.llm_dir.text().strip(),
            clip_weights=self.clip_weights.text().strip(),
            device=self.device.currentText(),
            precision=self.precision.currentText(),
            data_dir=self.data_dir.text().strip(),
            database_url=self.database_url.text().strip(),
            max_pixels=max_pixels,
            operator=self.operator.text().strip(),
            generate_answers=self.generate_answers.isChecked(),
            alert_on_defective=self.alert_on_defective.isChecked(),
        )

    def validate(self) -> str | None:
        """What is wrong with the edited values, as a sentence, or None."""
        s = self.settings()
        if not s.preset:
            return "Choose a model preset."
        if s.preset.endswith(".json"):
            if not Path(s.preset).expanduser().is_file():
                return f"Model preset file {s.preset} does not exist; choose an existing .json file."
        elif s.preset not in builtin_presets():
            return (f"Unknown model preset '{s.preset}'; choose one of {', '.join(builtin_presets())} "
                    f"or the path of a preset .json file.")
        for label, value in (("Weights folder", s.weights_dir), ("LLM folder", s.llm_dir),
                             ("Data folder", s.data_dir)):
            if value and not Path(value).expanduser().is_dir():
                return f"{label} {value} does not exist; choose an existing folder or leave it empty."
        if s.clip_weights and not Path(s.clip_weights).expanduser().exists():
            return (f"CLIP weights {s.clip_weights} do not exist; choose an open_clip checkpoint file or its folder, "
                    f"or leave it empty.")
        data_folder = Path(s.data_dir).expanduser() if s.data_dir else default_data_dir()
        if not s.database_url or (s.data_dir and s.data_dir != self._original.data_dir):
            problem = writable_problem(data_folder)
            if problem:
                return problem
        if s.precision == "fp16" and s.device == "cpu":
            return FP16_ON_CPU + "."
        if s.database_url and "://" not in s.database_url:
            return (f"Database URL '{s.database_url}' is not a database URL; use e.g. "
                    f"postgresql://user@host/iadgpt, or leave it empty for SQLite in the data folder.")
        return None

    def accept(self) -> None:
        problem = self.validate()
        if problem:
            self.error.setText(problem)
            self.error.setVisible(True)
            return
        self.error.setVisible(False)
        super().accept()

    @staticmethod
    def edit(settings: Settings, parent: QWidget | None = None) -> Settings | None:
        """Show the dialog; the edited settings, or None when cancelled."""
        dialog = SettingsDialog(settings, parent)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            return dialog.settings()
        return None
