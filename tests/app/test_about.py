"""Help > About lists what the application is installed with, from the packages' own metadata."""

from __future__ import annotations

import tomllib
from email.message import Message
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from PySide6.QtWidgets import QPlainTextEdit

from iadgpt.inspector import shipped_weights
from iadgpt_desktop.ui.about import AboutDialog, about_text, licence_of
from iadgpt_desktop.ui.main_window import sample_dir

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _meta(**fields: str | list[str]) -> Message:
    meta = Message()
    for key, value in fields.items():
        for v in value if isinstance(value, list) else [value]:
            meta[key.replace("_", "-")] = v
    return meta


def test_every_pyproject_dependency_is_listed_with_its_installed_version_and_licence() -> None:
    text = about_text(None)
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for line in dependencies:
        name = Requirement(line).name
        dist = metadata.distribution(name)
        entry = f"  {dist.metadata['Name']} {dist.version}: {licence_of(dist.metadata)}"
        assert entry in text.splitlines(), f"{name} is missing from About"
    assert f"  PySide6_Essentials {metadata.version('PySide6-Essentials')}: LGPL-3.0-only" in text
    # Followed through their own requirements: what torch pulls in is installed with the app too.
    torch_needs = [Requirement(r).name for r in metadata.requires("torch") or [] if "extra" not in r]
    assert any(f"  {metadata.distribution(n).metadata['Name']} " in text for n in torch_needs if _installed(n))


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_the_licence_is_what_the_metadata_declares() -> None:
    assert licence_of(_meta(License_Expression="BSD-3-Clause AND MIT", License="BSD")) == "BSD-3-Clause AND MIT"
    assert licence_of(_meta(License="Apache 2.0", Classifier="License :: OSI Approved :: MIT License")) == "Apache 2.0"
    whole_text = "Copyright (c) 2005 Someone\n\nRedistribution and use in source and binary forms ..."
    assert licence_of(_meta(License=whole_text, Classifier=["License :: OSI Approved :: BSD License",
                                                            "Programming Language :: Python"])) == "BSD License"
    assert licence_of(_meta(License="UNKNOWN")) == "not stated in its package metadata"


def test_data_and_model_attributions_come_from_the_model_card_and_the_samples(qtbot) -> None:
    text = about_text(None, shipped_weights("unified-lite0"), sample_dir())
    card = [line for line in text.splitlines() if line.startswith("  - ")]
    assert any("EfficientNet-Lite0" in line and "Apache-2.0" in line for line in card)
    assert any("BSData" in line and "CC BY-SA 4.0" in line and "trained parts" in line for line in card)
    assert any(line.startswith("  - ball_screw_drive: Source: T. Schlagenhauf") and "CC BY-SA 4.0" in line
               for line in card)
    assert "**" not in text and "`" not in text  # Markdown marks are not shown as such
    dialog = AboutDialog(text)
    qtbot.addWidget(dialog)
    shown = dialog.findChild(QPlainTextEdit)
    assert shown.isReadOnly() and shown.toPlainText() == text


def test_help_about_opens_on_the_station(station, qtbot) -> None:
    station.show_about()
    box = station._about_box
    qtbot.waitUntil(box.isVisible, timeout=5000)
    text = box.text.toPlainText()
    assert "Model: tiny-test@untrained" in text and "torch " in text
    box.close()
