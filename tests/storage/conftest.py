"""Fixtures for the storage tests: a fresh SQLite history in tmp_path, a way to make records
and one to migrate a history by hand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from sqlalchemy import Connection, Engine

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
