"""Layering contracts that a test checks instead of a convention people remember (DESIGN.md, STYLE.md).

* the model library `iadgpt` never imports PySide6, SQLAlchemy, alembic or the app `iadgpt_desktop`;
* no module imports another module's private (underscore) names.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "model" / "iadgpt"
FORBIDDEN_IN_LIBRARY = ("PySide6", "shiboken6", "sqlalchemy", "alembic", "iadgpt_desktop")
PACKAGES = {"iadgpt": LIBRARY, "iadgpt_desktop": ROOT / "iadgpt_desktop"}


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every import statement in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts)


def test_the_model_library_imports_no_qt_no_database_and_no_app() -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {module}"
           for path in _sources(LIBRARY) for line, module, _ in _imports(path)
           if module.split(".")[0] in FORBIDDEN_IN_LIBRARY]
    assert not bad, "the model library must stay free of Qt, the database and the app:\n" + "\n".join(bad)


def test_importing_every_library_module_loads_no_qt_no_database_and_no_app() -> None:
    """The same at run time, in a fresh interpreter: what a library module pulls in indirectly counts too."""
    modules = [".".join(("iadgpt", *p.relative_to(LIBRARY).with_suffix("").parts)).removesuffix(".__init__")
               for p in _sources(LIBRARY)]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(FORBIDDEN_IN_LIBRARY)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": f"{ROOT / 'model'}:{ROOT}", "HF_HUB_OFFLINE": "1",
                              "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_imports_another_modules_private_names(package: str) -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name} from {module}"
           for path in _sources(PACKAGES[package]) for line, module, names in _imports(path)
           if module.split(".")[0] in PACKAGES for name in names
           if name.startswith("_") and not name.startswith("__")]
    assert not bad, "import public names only (rename what is shared):\n" + "\n".join(bad)
