"""Fixtures for the storage tests: a fresh SQLite history in tmp_path, a way to make records
one to migrate a history by hand and one to write a row as an older revision did."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from iadgpt_desktop.storage import Database, InspectionRecord
from iadgpt_desktop.storage.db import alembic_config


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "data")
    yield database
    database.close()


def make_record(**overrides: Any) -> InspectionRecord:
    values: dict[str, Any] = {
        "source": "folder:/line1", "image_path": "images/ab/abc.png", "image_sha256": "a" * 64, "width": 64,
        "height": 48, "score": 0.5, "score_top1": 0.4, "p_yes": 0.3, "verdict": "good",
        "answer": "No, the object looks normal.", "model_id": "tiny-test", "mode": "zero-shot",
        "latency_ms": 12.5, "created_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return InspectionRecord(**values)


@contextmanager
def migrating(engine: Engine) -> Iterator[tuple[Connection, Config]]:
    """One transaction on `engine` and an Alembic config that migrates through it: for a history at an
    older revision (`command.upgrade(config, "0003_batch_claims")`) and rows written as it had them."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        yield conn, config


def insert_at_revision_0003(conn: Connection) -> None:
    """A row as a station at revision 0003 (before the nearest reference) wrote it, with the columns it
    had then; plain SQL, so it runs on SQLite and PostgreSQL alike."""
    conn.execute(text(
        "INSERT INTO inspections (created_at, source, image_path, file_name, image_sha256, width, height, score, "
        "score_top1, p_yes, verdict, answer, defect_types_json, model_id, mode, latency_ms) VALUES "
        "('2026-11-30 10:00:00', 'file', 'images/old.png', 'old_part.png', :sha, 64, 48, 0.7, 0.6, 0.8, "
        "'defective', 'Yes.', '[]', 'builtin', 'few-shot', 40.0)"), {"sha": "d" * 64})
