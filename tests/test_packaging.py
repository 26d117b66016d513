"""Files the installers and the PyInstaller build take from resources/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"


def test_windows_icon_has_every_shortcut_size_and_the_app_artwork():
    """Explorer, the taskbar and the Start menu pick 16-256 px frames from the .ico; a shortcut or an
    executable without one shows the blank default icon."""
    ico = Image.open(ICONS / "iadgpt-desktop.ico")
    assert ico.format == "ICO"
    assert {16, 32, 48, 256} <= {w for w, h in ico.ico.sizes()}
    ico.size = (256, 256)
    big = np.asarray(ico.convert("RGBA"), dtype=np.int16)
    png = np.asarray(Image.open(ICONS / "iadgpt-desktop.png").convert("RGBA"), dtype=np.int16)
    assert big.shape == png.shape and np.abs(big - png).max() <= 2


def test_installers_name_icons_that_exist():
    spec = (ROOT / "installer" / "iadgpt-desktop.spec").read_text(encoding="utf-8")
    windows = (ROOT / "installer" / "install-windows.ps1").read_text(encoding="utf-8")
    assert '"iadgpt-desktop.ico"' in spec and '"iadgpt-desktop.png"' in spec
    assert "resources\\icons\\iadgpt-desktop.ico" in windows
    assert (ICONS / "iadgpt-desktop.ico").is_file() and (ICONS / "iadgpt-desktop.png").is_file()
