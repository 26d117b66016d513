"""Help > About: the version, the model in use, licences and attributions (plain text).

Nothing here is typed by hand that the installation can say itself: the licence list is every
distribution the application installs with (its runtime requirements, followed through theirs), each
with its installed version and the licence its metadata declares; the data and model attributions
are read from the model card of the weights in use and from the sample images' ATTRIBUTION.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout, QWidget

from iadgpt_desktop.workers.contract import ModelStatus

APPLICATION = "iadgpt-desktop"
PAPER = ("IAD-GPT: Li et al., \"IAD-GPT: Advancing Visual Knowledge in Multimodal Large Language Model for "
         "Industrial Anomaly Detection\".")
_LONG_LICENCE = 80  # a `License` field longer than this (or several lines) is the licence's whole text
_CLASSIFIER = "License :: "


def _key(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed as a package"


def licence_of(meta) -> str:
    """The licence a distribution's metadata declares: License-Expression (PEP 639), else a short
    License field, else the licence classifiers, else the License text's first line."""
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field.upper() == "UNKNOWN":
        field = ""
    if field and "\n" not in field and len(field) <= _LONG_LICENCE:
        return field
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                   if c.startswith(_CLASSIFIER) and c.count("::") >= 2]
    if classifiers:
        return ", ".join(classifiers)
    if field:
        return field.splitlines()[0].strip()[:_LONG_LICENCE] + " …"
    return "not stated in its package metadata"


def shipped_distributions(root: str = APPLICATION) -> Iterator[metadata.Distribution]:
    """`root` and everything it needs at run time, each once, sorted by name (extras not included)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if _key(name) in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed for this platform (a marker we could not see), so not shipped
        found[_key(name)] = dist
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    yield from sorted(found.values(), key=lambda d: _key(d.metadata["Name"]))


def licence_lines(root: str = APPLICATION) -> list[str]:
    """One line per shipped distribution: "name version: licence"."""
    lines = [f"{d.metadata['Name']} {d.version}: {licence_of(d.metadata)}" for d in shipped_distributions(root)
             if _key(d.metadata["Name"]) != _key(root)]
    return lines or [f"(the package metadata of {root} is not installed, so its dependencies cannot be listed)"]


def _plain_markdown(text: str) -> str:
    """Markdown emphasis and code marks dropped: the About box shows plain text."""
    return re.sub(r"\*\*|(?<!\w)\*(?=\w)|(?<=\w)\*(?!\w)|`", "", text)


def model_card_attributions(folder: Path | None) -> list[str]:
    """The bullet points of the "Data and licences" section of the model card in `folder`."""
    card = folder / "MODEL_CARD.md" if folder is not None else None
    if card is None or not card.is_file():
        return []
    section = re.search(r"^## Data and licences\s*$(.*?)(?=^## |\Z)", card.read_text(encoding="utf-8"),
                        re.MULTILINE | re.DOTALL)
    if section is None:
        return []
    items = re.split(r"^- ", section.group(1).strip(), flags=re.MULTILINE)
    return [_plain_markdown(" ".join(item.split())) for item in items if item.strip()]


def sample_attributions(samples: Path) -> list[str]:
    """The source and licence lines of the shipped sample images' ATTRIBUTION.md."""
    note = samples / "ATTRIBUTION.md"
    if not note.is_file():
        return []
    paragraphs = re.split(r"\n\s*\n", note.read_text(encoding="utf-8"))
    picked = [" ".join(p.split()) for p in paragraphs if p.startswith(("**Source:**", "**Licence:**"))]
    return [_plain_markdown(f"{samples.name}: {' '.join(picked)}")] if picked else []


def about_text(model: ModelStatus | None, model_folder: Path | None = None, samples: Path | None = None) -> str:
    lines = [f"IAD-GPT Desktop {_version(APPLICATION)}",
             "A desktop inspection station for industrial visual anomaly detection.", ""]
    if model is None or not model.model_id:
        lines.append(f"Model: not loaded{f' ({model.message})' if model and model.message else ''}")
    else:
        lines.append(f"Model: {model.model_id}, mode {model.mode}"
                     + (f"; trained on {', '.join(model.trained_classes)}" if model.trained_classes else ""))
    lines += ["", "Paper:", f"  {PAPER}"]
    card = model_card_attributions(model_folder)
    if card:
        lines += ["", f"Data and licences, from the model card ({model_folder / 'MODEL_CARD.md'}):"]
        lines += [f"  - {a}" for a in card]
    shipped_samples = sample_attributions(samples) if samples is not None else []
    if shipped_samples:
        lines += ["", "Sample images:"] + [f"  - {a}" for a in shipped_samples]
    packages = licence_lines()
    lines += ["", f"Licences of the {len(packages)} packages it is installed with (from their metadata):"]
    lines += [f"  {line}" for line in packages]
    return "\n".join(lines)


class AboutDialog(QDialog):
    """The About text in a scrolling, read-only plain-text box (the package list is long)."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About IAD-GPT Desktop")
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
        self.resize(720, 560)
