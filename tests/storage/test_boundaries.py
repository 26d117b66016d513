"""Layering: storage imports no Qt, the model library no SQLAlchemy; threads each use their own Session."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from iadgpt_desktop.storage import Database, InspectionFilter
from iadgpt_desktop.storage import repository as repo
from tests.storage.conftest import make_record

ROOT = Path(__file__).resolve().parents[2]


def imported_roots(folder: Path) -> set[str]:
    roots = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


def test_storage_imports_no_qt_and_the_model_library_no_sqlalchemy() -> None:
    storage = imported_roots(ROOT / "iadgpt_desktop" / "storage")
    assert not {"PySide6", "PyQt5", "PyQt6", "shiboken6"} & storage
    assert {"sqlalchemy", "alembic"} <= storage
    assert not {"sqlalchemy", "alembic"} & imported_roots(ROOT / "model" / "iadgpt")


def test_a_worker_thread_writes_while_the_view_reads(db: Database) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(20):
                with db.Session.begin() as s:
                    repo.add_inspection(s, make_record(answer=f"w{i}"))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    seen = []
    while thread.is_alive():
        with db.Session() as s:
            seen.append(repo.count_inspections(s, InspectionFilter()))
    thread.join()
    assert errors == []
    assert seen == sorted(seen)  # the view only ever sees whole, committed inspections
    with db.Session() as s:
        assert repo.count_inspections(s, InspectionFilter()) == 20
