"""Help > About: the version, the model in use, licences and attributions (plain text)."""

from __future__ import annotations

from importlib import metadata

from iadgpt_desktop.workers.contract import ModelStatus

# (component, licence) for what the installed application bundles or links.
LICENCES = (
    ("Qt 6 / PySide6", "LGPL-3.0"),
    ("PyTorch, torchvision", "BSD-3-Clause"),
    ("open_clip", "MIT"),
    ("Hugging Face transformers, accelerate, safetensors", "Apache-2.0"),
    ("EfficientNet-Lite image tower", "Apache-2.0"),
    ("OpenCV", "Apache-2.0"),
    ("NumPy", "BSD-3-Clause"),
    ("SQLAlchemy, Alembic", "MIT"),
    ("Pillow", "MIT-CMU (HPND)"),
)
ATTRIBUTIONS = (
    "IAD-GPT: Li et al., \"IAD-GPT: Advancing Visual Knowledge in Multimodal Large Language Model for "
    "Industrial Anomaly Detection\".",
    "Sample images: BSData, Schlagenhauf & Landwehr (2021), CC BY-SA 4.0 "
    "(resources/samples/ball_screw_drive/ATTRIBUTION.md).",
)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed as a package"


def about_text(model: ModelStatus | None) -> str:
    lines = [f"IAD-GPT Desktop {_version('iadgpt-desktop')}",
             "A desktop inspection station for industrial visual anomaly detection.", ""]
    if model is None or not model.model_id:
        lines.append(f"Model: not loaded{f' ({model.message})' if model and model.message else ''}")
    else:
        lines.append(f"Model: {model.model_id}, mode {model.mode}"
                     + (f"; trained on {', '.join(model.trained_classes)}" if model.trained_classes else ""))
    lines.append(f"PySide6 {_version('PySide6-Essentials')}, PyTorch {_version('torch')}")
    lines += ["", "Licences:"] + [f"  {name}: {licence}" for name, licence in LICENCES]
    lines += ["", "Attributions:"] + [f"  {a}" for a in ATTRIBUTIONS]
    return "\n".join(lines)
