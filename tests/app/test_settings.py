"""Settings file round trip and the settings dialog."""

from __future__ import annotations

import dataclasses
import errno
import json
import re
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from iadgpt_desktop.settings import Settings, load_settings, save_settings
from iadgpt_desktop.ui import settings_dialog
from iadgpt_desktop.ui.settings_dialog import FP16_ON_CPU, SettingsDialog


@pytest.fixture(autouse=True)
def _no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to have two GPUs: the dialog then offers cuda:0 and cuda:1, and torch is not imported."""
    monkeypatch.setattr(settings_dialog, "cuda_device_count", lambda: 2)


def make_dialog(qtbot, settings: Settings | None = None) -> SettingsDialog:
    dialog = SettingsDialog(settings or Settings())
    qtbot.addWidget(dialog)
    return dialog


def click_ok(dialog: SettingsDialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "settings.json"
    settings = Settings(preset="paper", device="cuda", precision="bf16", data_dir=str(tmp_path),
                        max_pixels=25_000_000, operator="Ana", generate_answers=False, overlay_opacity=0.7)
    assert save_settings(settings, path) == path
    assert load_settings(path) == settings


def test_saving_again_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    save_settings(Settings(operator="Ana"), path)
    save_settings(Settings(operator="Ben"), path)
    assert load_settings(path) == Settings(operator="Ben")
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no settings.tmp


def test_a_save_that_fills_the_disk_keeps_the_old_settings_and_names_the_file(tmp_path: Path,
                                                                              disk_fills_midway) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"operator": "Ana"}), encoding="utf-8")
    with pytest.raises(OSError, match=rf"cannot write the settings file {re.escape(str(path))}: No space left on "
                                      "device; check that the folder is writable") as caught:
        save_settings(Settings(operator="Ben"), path)
    assert caught.value.errno == errno.ENOSPC  # the window says "Settings not saved: ..." and goes on
    assert load_settings(path) == Settings(operator="Ana")
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


def test_missing_or_corrupt_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.json") == Settings()
    corrupt = tmp_path / "settings.json"
    corrupt.write_text("{ not json", encoding="utf-8")
    assert load_settings(corrupt) == Settings()
    corrupt.write_text("[1, 2, 3]", encoding="utf-8")
    assert load_settings(corrupt) == Settings()


def test_unknown_and_mistyped_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"preset": "paper", "colour_scheme": "dark", "max_pixels": "lots"}),
                    encoding="utf-8")
    assert load_settings(path) == Settings(preset="paper")


def test_dialog_shows_and_returns_edited_values(qtbot, tmp_path: Path) -> None:
    original = Settings(overlay_mode="outline", max_pixels=12_345_678)
    dialog = make_dialog(qtbot, original)
    assert dialog.preset.currentText() == original.preset
    assert [dialog.device.itemText(i) for i in range(dialog.device.count())] == [
        "auto", "cpu", "cuda", "cuda:0", "cuda:1"]
    assert dialog.settings() == original  # untouched: nothing changes, not even odd pixel counts

    weights, data = tmp_path / "weights", tmp_path / "data"
    weights.mkdir()
    data.mkdir()
    dialog.preset.setCurrentText("paper")
    dialog.weights_dir.setText(str(weights))
    dialog.device.setCurrentText("cuda:1")
    dialog.precision.setCurrentText("fp16")
    dialog.data_dir.setText(str(data))
    dialog.database_url.setText("postgresql://qa@db-host/iadgpt")
    dialog.max_pixels.setValue(40)
    dialog.operator.setText("  Ana  ")
    dialog.generate_answers.setChecked(False)
    click_ok(dialog)
    assert dialog.result() == SettingsDialog.DialogCode.Accepted
    assert dialog.settings() == dataclasses.replace(
        original, preset="paper", weights_dir=str(weights), device="cuda:1", precision="fp16",
        data_dir=str(data), database_url="postgresql://qa@db-host/iadgpt", max_pixels=40_000_000,
        operator="Ana", generate_answers=False)
    assert "SQLite" in dialog.database_url.placeholderText()


def test_missing_folder_keeps_the_dialog_open(qtbot, tmp_path: Path) -> None:
    dialog = make_dialog(qtbot)
    dialog.show()
    dialog.llm_dir.setText(str(tmp_path / "no-such-llm"))
    click_ok(dialog)
    assert dialog.isVisible()
    assert dialog.result() != SettingsDialog.DialogCode.Accepted
    assert "LLM folder" in dialog.error.text() and "does not exist" in dialog.error.text()
    assert not dialog.error.isHidden()
    dialog.llm_dir.setText("")
    click_ok(dialog)
    assert not dialog.isVisible()
    assert dialog.result() == SettingsDialog.DialogCode.Accepted


def test_fp16_on_cpu_is_rejected(qtbot) -> None:
    dialog = make_dialog(qtbot)
    dialog.show()
    dialog.device.setCurrentText("cpu")
    dialog.precision.setCurrentText("fp16")
    click_ok(dialog)
    assert dialog.isVisible()
    assert FP16_ON_CPU in dialog.error.text()
    dialog.precision.setCurrentText("bf16")
    click_ok(dialog)
    assert not dialog.isVisible()


def test_unknown_preset_and_bad_url_are_rejected(qtbot, tmp_path: Path) -> None:
    dialog = make_dialog(qtbot)
    dialog.preset.setCurrentText("no-such-preset")
    assert "Unknown model preset" in dialog.validate()
    dialog.preset.setCurrentText(str(tmp_path / "mine.json"))
    assert "does not exist" in dialog.validate()
    (tmp_path / "mine.json").write_text("{}", encoding="utf-8")
    assert dialog.validate() is None
    dialog.database_url.setText("just-a-name")
    assert "not a database URL" in dialog.validate()


def test_edit_returns_none_on_cancel_and_settings_on_ok(qtbot) -> None:
    def answer(button: QDialogButtonBox.StandardButton, operator: str = "") -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, SettingsDialog)
        dialog.operator.setText(operator)
        dialog.buttons.button(button).click()

    QTimer.singleShot(0, lambda: answer(QDialogButtonBox.StandardButton.Cancel, "Bo"))
    assert SettingsDialog.edit(Settings()) is None
    QTimer.singleShot(0, lambda: answer(QDialogButtonBox.StandardButton.Ok, "Bo"))
    assert SettingsDialog.edit(Settings()) == Settings(operator="Bo")


def test_screenshot(qtbot) -> None:
    dialog = make_dialog(qtbot, Settings(operator="Ana"))
    dialog.show()
    dialog.device.setCurrentText("cpu")
    dialog.precision.setCurrentText("fp16")
    click_ok(dialog)
    assert dialog.grab().save("/tmp/settings_dialog.png")


# -- issue 12, problem 10 ------------------------------------------------------------------------


def test_unwritable_data_folder_is_rejected(qtbot, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(settings_dialog.tempfile, "NamedTemporaryFile", refuse)
    dialog = make_dialog(qtbot)
    dialog.show()
    dialog.data_dir.setText(str(folder))
    click_ok(dialog)
    assert dialog.isVisible() and "not writable" in dialog.error.text() and str(folder) in dialog.error.text()


def test_writable_data_folder_is_accepted_even_before_it_exists(qtbot, tmp_path: Path) -> None:
    assert settings_dialog.writable_problem(tmp_path / "new" / "data") is None


def test_command_line_overrides_are_not_saved(qtbot, tmp_path: Path, monkeypatch) -> None:
    from iadgpt_desktop.ui.main_window import MainWindow

    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))
    saved = Settings(preset="tiny-test", device="cpu", data_dir=str(tmp_path / "kept"))
    save_settings(saved)
    run = dataclasses.replace(saved, data_dir=str(tmp_path / "override"))  # --data-dir
    w = MainWindow(run, persist_settings=True, saved_settings=saved)
    qtbot.addWidget(w)
    try:
        w.live.opacity.setValue(80)  # a change the user makes: saved
        on_disk = load_settings()
        assert on_disk.data_dir == str(tmp_path / "kept") and on_disk.overlay_opacity == pytest.approx(0.8)
    finally:
        w.close()


def test_dev_setup_installs_what_a_real_x_display_needs() -> None:
    script = (Path(__file__).resolve().parents[2] / "installer" / "dev-setup.sh").read_text(encoding="utf-8")
    for package in ("libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0", "libxcb-image0", "libxcb-randr0",
                    "libxcb-render-util0", "libxcb-shape0", "libxcb-xinerama0", "libxcb-xkb1", "libxkbcommon-x11-0"):
        assert package in script, package


def test_clip_weights_are_a_setting_that_reloads_the_model(qtbot, tmp_path: Path) -> None:
    """Settings > Model > CLIP weights: kept, saved, part of the model key; a path that is not there is refused."""
    checkpoint = tmp_path / "open_clip_model.safetensors"
    checkpoint.write_bytes(b"x")
    dialog = make_dialog(qtbot)
    dialog.clip_weights.setText(str(checkpoint))
    assert dialog.validate() is None and dialog.settings().clip_weights == str(checkpoint)
    assert dialog.settings().model_key() != Settings().model_key()
    path = save_settings(dialog.settings(), tmp_path / "settings.json")
    assert load_settings(path).clip_weights == str(checkpoint)
    dialog.clip_weights.setText(str(tmp_path / "absent.safetensors"))
    assert "CLIP weights" in dialog.validate() and "do not exist" in dialog.validate()


def test_the_worker_passes_the_clip_weights_to_the_inspector(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from iadgpt_desktop.workers import inference

    seen = {}

    class Refused(Exception):
        pass

    def inspector(*args, **kwargs):
        seen.update(kwargs)
        raise Refused("stop here")

    monkeypatch.setattr(inference, "Inspector", inspector)
    worker = inference.InferenceWorker(Settings(preset="tiny-test", clip_weights="/weights/clip", llm_dir="/llm",
                                                data_dir=str(tmp_path)))
    worker._load_model()
    assert seen["clip_weights"] == "/weights/clip" and seen["llm_path"] == "/llm"
