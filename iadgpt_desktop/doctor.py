"""`iadgpt doctor`: what is installed and found, and what is missing, with the fix for each.

It checks the whole station: Python and libraries, CUDA, resources, every preset's weights (found
*and* fitting their architecture: names and shapes, `iadgpt.weights_fit`), the app's settings, data
folder and database, and Qt's platforms; so it lives in the app, not in the model library.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iadgpt.config import DEFAULT_PRESET
from iadgpt.errors import IADGPTError
from iadgpt.models_admin import resolve_preset
from iadgpt.weights_fit import part_problems
from iadgpt_desktop import settings as settings_mod

ESSENTIAL_PRESETS = ("tiny-test", DEFAULT_PRESET)  # the ones that must work with no downloaded weights
QT_DEBS = ("libegl1", "libgl1", "libxkbcommon0", "libxkbcommon-x11-0", "libfontconfig1", "libdbus-1-3",
           "libglib2.0-0")

@dataclass
class _Report:
    out: Callable[[str], None]
    missing: list[tuple[str, str, bool]] = field(default_factory=list)  # (what, fix, essential)

    def section(self, title: str) -> None:
        self.out(f"\n== {title}")

    def line(self, text: str) -> None:
        self.out(f"  {text}")

    def problem(self, what: str, fix: str, *, essential: bool) -> None:
        self.missing.append((what, fix, essential))


def _version(module: str, dist: str | None = None) -> str | None:
    try:
        return importlib.metadata.version(dist or module)
    except importlib.metadata.PackageNotFoundError:
        return None


def _try_import(name: str):
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError from missing shared libraries, ...
        return None, f"{type(exc).__name__}: {exc}"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _check_libraries(r: _Report) -> object | None:
    r.section("Python and libraries")
    r.line(f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    if sys.version_info[:2] != (3, 11):
        r.problem(f"Python 3.11 (this is {platform.python_version()})",
                  "install Python 3.11 and re-run the installer with it", essential=False)
    torch = None
    libs = [("torch", "torch", True), ("torchvision", "torchvision", True),
            ("open_clip", "open_clip_torch", True), ("transformers", "transformers", True),
            ("safetensors", "safetensors", True), ("cv2", "opencv-python-headless", True),
            ("PySide6", "PySide6-Essentials", True), ("sqlalchemy", "SQLAlchemy", True),
            ("alembic", "alembic", True), ("psycopg", "psycopg", False)]
    for module, dist, essential in libs:
        mod, error = _try_import(module)
        version = getattr(mod, "__version__", None) or _version(module, dist)
        if mod is None:
            r.line(f"{module:13s} MISSING ({error})")
            fix = (f"pip install '{dist}' into this environment (re-run the installer)" if essential else
                   "only for a PostgreSQL history: pip install 'psycopg[binary]'")
            r.problem(f"{dist} (python module {module})", fix, essential=essential)
        else:
            r.line(f"{module:13s} {version}")
            if module == "torch":
                torch = mod
    return torch


def _check_gpu(r: _Report, torch) -> None:
    r.section("CUDA")
    if torch is None:
        r.line("torch is missing, so no CUDA check")
        return
    r.line(f"torch build: {'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU only'}")
    try:
        available = torch.cuda.is_available()
    except Exception as exc:  # noqa: BLE001
        available = False
        r.line(f"CUDA check failed: {exc}")
    if not available:
        r.line("no CUDA device: inspection runs on the CPU (fine for tiny-test and demo, slow for paper)")
        if shutil.which("nvidia-smi"):
            r.problem("CUDA in torch (nvidia-smi works, but torch sees no GPU)",
                      "re-run the installer so it installs torch's CUDA build, or update the NVIDIA driver",
                      essential=False)
        return
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        try:
            free, total = torch.cuda.mem_get_info(i)
            mem = f"{_gib(total)} total, {_gib(free)} free"
        except Exception:  # noqa: BLE001
            mem = f"{_gib(props.total_memory)} total"
        r.line(f"cuda:{i} {props.name}, {mem}, compute capability {props.major}.{props.minor}")


def _check_presets(r: _Report, *, smoke: bool) -> None:
    r.section("Presets and weights")
    try:
        from iadgpt.config import builtin_presets, load_preset
        from iadgpt.inspector import shipped_weights
        from iadgpt.weights import hf_cache_dir
    except Exception as exc:  # noqa: BLE001
        r.line(f"cannot load the model library: {exc}")
        r.problem("the iadgpt model library", "re-run the installer", essential=True)
        return
    r.line(f"Hugging Face cache: {hf_cache_dir()}")
    names = builtin_presets()
    for name in names:
        essential = name in ESSENTIAL_PRESETS
        try:
            preset = load_preset(name)
        except IADGPTError as exc:
            r.line(f"{name}: BROKEN preset ({exc})")
            r.problem(f"preset {name}", "reinstall IAD-GPT (the preset file is damaged)", essential=essential)
            continue
        parts = resolve_preset(preset)
        random = [w for w, spec in (("clip", preset.clip_weights), ("llm", preset.llm.path))
                  if not spec and not (w == "clip" and preset.efficientnet is not None)]
        found = all(p is not None for _, p in parts)
        unfit = [p for what, path in parts if path is not None for p in part_problems(preset, what, path)]
        ready = found and not unfit
        r.line(f"{name}: {'ready' if ready else 'weights missing' if not found else 'weights do not fit'}")
        trained = shipped_weights(name)
        for what in random:
            r.line(f"    {what}: trained, shipped in {trained}" if trained and what == "llm"
                   else f"    {what}: random (no download needed)")
        for what, path in parts:
            spec = {"clip": preset.clip_weights, "llm": preset.llm.path}.get(what, "its Python package")
            r.line(f"    {what}: {path}" if path else f"    {what}: MISSING {spec}")
        for problem in unfit:
            r.line(f"    PROBLEM: {problem}")
        if unfit:
            r.problem(f"weights of preset {name} that fit its architecture ({unfit[0]})",
                      f"replace the file named above (`iadgpt models download {name}` on an online machine, then "
                      f"`iadgpt models import DIR --preset {name}`)", essential=essential)
        elif not found:
            r.problem(f"weights of preset {name}",
                      f"`iadgpt models download {name}` on an online machine, then copy them here and "
                      f"`iadgpt models import DIR --preset {name}`", essential=essential)
        elif essential and smoke:
            _smoke_test(r, name)


def _smoke_test(r: _Report, name: str) -> None:
    try:
        import numpy as np

        from iadgpt.inspector import Inspector

        inspector = Inspector(name, device="cpu")
        yy, xx = np.mgrid[0:96, 0:96]
        image = np.stack([(xx * 2) % 256, (yy * 2) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
        result = inspector.inspect(image, generate_answer=False)
        r.line(f"    smoke test on the CPU: ok (verdict {result.verdict}, {result.latency_ms:.0f} ms)")
    except Exception as exc:  # noqa: BLE001 - report any failure as a sentence
        r.line(f"    smoke test on the CPU: FAILED ({type(exc).__name__}: {exc})")
        r.problem(f"a working {name} preset ({exc})", "re-run the installer; if it persists, report this output",
                  essential=True)


def _check_resources(r: _Report) -> None:
    r.section("Resources")
    try:
        from iadgpt.data.answers import default_templates_path
        from iadgpt.prompt_bank import default_bank_dir
    except Exception as exc:  # noqa: BLE001
        r.line(f"cannot load the model library: {exc}")
        return
    banks = default_bank_dir()
    count = len(list(banks.glob("*.json"))) if banks.is_dir() else 0
    r.line(f"prompt banks: {banks} ({count} file(s))")
    if not (banks / "generic.json").is_file():
        r.problem(f"prompt banks (generic.json) in {banks}",
                  "reinstall IAD-GPT, or set IADGPT_RESOURCES to the folder holding apg/", essential=True)
    templates = default_templates_path()
    r.line(f"answer templates: {templates} ({'found' if templates.is_file() else 'MISSING'})")
    if not templates.is_file():
        r.problem(f"answer templates {templates}",
                  "reinstall IAD-GPT, or set IADGPT_RESOURCES to the folder holding answer_templates.json",
                  essential=True)


def _existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_data(r: _Report) -> None:
    r.section("Data folder and database")
    try:
        settings = settings_mod.load_settings()
    except Exception as exc:  # noqa: BLE001
        r.line(f"settings unreadable ({exc}); using defaults")
        settings = settings_mod.Settings()
    data = settings.data_path
    r.line(f"settings file: {settings_mod.config_dir() / 'settings.json'}")
    r.line(f"data folder: {data} ({'exists' if data.is_dir() else 'will be created'})")
    if settings.database_url:
        from urllib.parse import urlsplit

        parts = urlsplit(settings.database_url)
        shown = settings.database_url.replace(f":{parts.password}@", ":***@") if parts.password else \
            settings.database_url
        r.line(f"database: {shown}")
    else:
        r.line(f"database: SQLite file {data / 'iadgpt.sqlite3'}")
    base = _existing_parent(data)
    if not os.access(base, os.W_OK):
        r.problem(f"write access to the data folder {data}",
                  "choose another folder in Settings > Storage or fix the folder's permissions", essential=True)
    usage = shutil.disk_usage(base)
    r.line(f"free disk space there: {_gib(usage.free)} of {_gib(usage.total)}")
    if usage.free < 1 << 30:
        r.problem(f"free disk space in {base} (only {_gib(usage.free)})",
                  "free some space or move the data folder (Settings > Storage)", essential=False)


_QT_PROBE = ("import sys\nfrom PySide6.QtGui import QGuiApplication\n"
             "app = QGuiApplication(sys.argv[:1])\nprint(app.platformName())\n")


def _probe_qt(platform_name: str | None) -> tuple[bool, str]:
    env = dict(os.environ)
    if platform_name:
        env["QT_QPA_PLATFORM"] = platform_name
    try:
        proc = subprocess.run([sys.executable, "-c", _QT_PROBE], env=env, capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    if proc.returncode == 0:
        return True, proc.stdout.strip()
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    return False, (lines[-1] if lines else f"exit status {proc.returncode}")


def _check_qt(r: _Report) -> None:
    r.section("Qt")
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        r.line("PySide6 is missing")
        return
    plugins = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms"
    names = sorted(p.name.removeprefix("libq").split(".")[0] for p in plugins.glob("*")) if plugins.is_dir() else []
    r.line(f"platform plugins: {', '.join(names) or 'none found'}")
    display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
    r.line(f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM', '(unset)')}, display: {display or 'none'}")
    ok, detail = _probe_qt("offscreen")
    r.line(f"offscreen (headless, --screenshot): {'ok' if ok else 'FAILED: ' + detail}")
    if not ok:
        fix = f"sudo apt-get install {' '.join(QT_DEBS)}" if sys.platform.startswith("linux") else \
            "reinstall PySide6 (pip install --force-reinstall PySide6-Essentials)"
        r.problem(f"Qt libraries ({detail})", fix, essential=True)
    if os.environ.get("QT_QPA_PLATFORM", "") == "offscreen":
        return
    if sys.platform.startswith("linux") and not display:
        r.line("window platform: no display (start the app from a desktop session to see its window)")
        r.problem("a display for the window (no DISPLAY/WAYLAND_DISPLAY)",
                  "run from a desktop session, or QT_QPA_PLATFORM=offscreen for headless batches", essential=False)
        return
    ok, detail = _probe_qt(None)
    r.line(f"window platform: {detail if ok else 'FAILED: ' + detail}")
    if not ok:
        r.problem(f"the Qt window platform ({detail})",
                  f"sudo apt-get install {' '.join(QT_DEBS)} libxcb-cursor0" if sys.platform.startswith("linux")
                  else "update the graphics driver", essential=False)


def doctor(*, smoke: bool = True, out: Callable[[str], None] = print) -> int:
    """Print the installation report; 0 when the no-download presets work, 1 if something essential is missing."""
    r = _Report(out)
    out("IAD-GPT doctor")
    torch = _check_libraries(r)
    _check_gpu(r, torch)
    _check_resources(r)
    _check_presets(r, smoke=smoke and torch is not None)
    _check_data(r)
    _check_qt(r)
    r.section("Summary")
    if not r.missing:
        out("missing: nothing")
    else:
        out("missing:")
        for what, fix, essential in r.missing:
            out(f"  - {'[essential] ' if essential else ''}{what}\n      fix: {fix}")
    essential = [m for m in r.missing if m[2]]
    out("result: " + ("NOT READY (essential parts missing)" if essential else "ready"))
    return 1 if essential else 0


