"""Application settings: a small JSON file in the user's config folder (no Qt, easy to test)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from iadgpt.atomic import atomic_open
from iadgpt.config import DEFAULT_PRESET

log = logging.getLogger(__name__)


def config_dir() -> Path:
    if os.environ.get("IADGPT_DESKTOP_CONFIG"):
        return Path(os.environ["IADGPT_DESKTOP_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "iadgpt-desktop"


def default_data_dir() -> Path:
    if os.environ.get("IADGPT_DESKTOP_DATA"):
        return Path(os.environ["IADGPT_DESKTOP_DATA"])
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "iadgpt-desktop"


# Presets that no longer ship, and what a saved setting naming one moves to.
RETIRED_PRESETS = {"demo": DEFAULT_PRESET}


@dataclass(frozen=True)
class Settings:
    preset: str = DEFAULT_PRESET  # the built-in model (resources/models/unified-lite0)
    weights_dir: str = ""  # trained decoder/TGE/MMF weights; "" = the preset's own (or none)
    llm_dir: str = ""  # overrides the preset's LLM folder
    clip_weights: str = ""  # overrides the preset's open_clip checkpoint: a weights file or its folder
    device: str = "auto"
    precision: str = "auto"
    data_dir: str = ""  # "" = default_data_dir()
    database_url: str = ""  # "" = SQLite file in the data folder
    max_pixels: int = 100_000_000
    overlay_mode: str = "heatmap"  # "heatmap" or "outline"
    overlay_opacity: float = 0.45
    overlay_visible: bool = True
    operator: str = ""
    generate_answers: bool = True
    alert_on_defective: bool = False  # beep and flash the verdict when a new part is defective
    last_product_id: int = 0  # the product inspected last, chosen again at start (0: none yet)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()

    def model_key(self) -> tuple:
        """What requires reloading the model when it changes."""
        return (self.preset, self.weights_dir, self.llm_dir, self.clip_weights, self.device, self.precision,
                self.max_pixels)

    def storage_key(self) -> tuple:
        return (str(self.data_path), self.database_url)


def load_settings(path: Path | None = None) -> Settings:
    """Saved settings; unknown or invalid entries fall back to defaults with a warning (never a crash)."""
    path = path or config_dir() / "settings.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as exc:
        log.warning("settings file %s is unreadable (%s); using defaults", path, exc)
        return Settings()
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    clean = {}
    for key, value in data.items() if isinstance(data, dict) else []:
        default = getattr(Settings(), key, None)
        if key in fields and isinstance(value, type(default)):
            clean[key] = value
        else:
            log.warning("ignoring setting %r=%r in %s", key, value, path)
    if clean.get("preset") in RETIRED_PRESETS:
        log.info("preset %r was retired; using %r", clean["preset"], RETIRED_PRESETS[clean["preset"]])
        clean["preset"] = RETIRED_PRESETS[clean["preset"]]
    return Settings(**clean)


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings file, replacing it atomically: a full disk or a crash keeps the old settings.

    Raises OSError (of the errno's own subclass) whose message names the file, for the caller to show.
    """
    path = path or config_dir() / "settings.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(dataclasses.asdict(settings), indent=2) + "\n")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the settings file {path}: {exc.strerror or exc}; check that "
                                 f"the folder is writable and the disk has free space") from exc
    return path
