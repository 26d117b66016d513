"""Opening the history: survives a restart, SQLite settings, migrations, locked database, full disk."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from iadgpt_desktop.storage import Database, StorageError
from iadgpt_desktop.storage import repository as repo
from iadgpt_desktop.storage.models import Base
from tests.storage.conftest import make_record, migrating


def test_inspection_survives_restart(tmp_path: Path) -> None:
    data = tmp_path / "station"
    db = Database.open(data)
    with db.Session.begin() as s:
        product = repo.get_or_create_product(s, "bottle-line-1", "bottle")
        when = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
        iid = repo.add_inspection(s, make_record(product_id=product, verdict="defective", created_at=when,
                                                 defect_types=[("crack", 0.75), ("scratch", 0.2)],
                                                 position="top left"))
        repo.add_message(s, iid, "user", "Where is the defect?")
    db.close()

    db = Database.open(data)  # the "restart"
    with db.Session() as s:
        row = repo.get_inspection(s, iid)
        messages = repo.get_conversation(s, iid)
    db.close()
    assert row is not None
    assert (row.verdict, row.product_name, row.position) == ("defective", "bottle-line-1", "top left")
    assert row.created_at == when and row.created_at.tzinfo is not None
    assert row.defect_types == [("crack", 0.75), ("scratch", 0.2)]
    assert [m.content for m in messages] == ["Where is the defect?"]
    assert (data / "iadgpt.sqlite3").is_file()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000


def test_other_url_is_used_unchanged(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'elsewhere' / 'shared.db').as_posix()}"
    with Database.open(tmp_path / "data", url) as db:
        assert db.url == url
        assert db.files.root == (tmp_path / "data").resolve()
    assert (tmp_path / "elsewhere" / "shared.db").is_file()


def test_migrations_produce_the_models_schema_and_rerun_is_a_no_op(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        schema = conn.execute(text("SELECT type, name, sql FROM sqlite_master ORDER BY name")).all()
    assert version == "0004_nearest_reference"
    assert {"products", "inspections", "conversations", "messages"} <= set(inspect(db.engine).get_table_names())

    with migrating(db.engine) as (conn, config):
        command.upgrade(config, "head")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT type, name, sql FROM sqlite_master ORDER BY name")).all() == schema


def test_downgrade_to_base_and_upgrade_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with migrating(engine) as (conn, config):
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
        command.upgrade(config, "head")
        assert "inspections" in inspect(conn).get_table_names()
    engine.dispose()


def test_unknown_newer_schema_is_a_clear_error(tmp_path: Path) -> None:
    with Database.open(tmp_path) as db, db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match="newer"):
        Database.open(tmp_path)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "iadgpt.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="is not an IAD-GPT database or is damaged"):
        Database.open(tmp_path)


def test_locked_database_raises_storage_error_and_nothing_is_lost(tmp_path: Path) -> None:
    db = Database.open(tmp_path, busy_timeout_ms=100)
    with db.Session.begin() as s:
        repo.add_inspection(s, make_record(answer="before the lock"))

    holder = sqlite3.connect(tmp_path / "iadgpt.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    record = make_record(answer="written while locked")
    with pytest.raises(StorageError, match="locked") as info:
        with db.Session.begin() as s:
            repo.add_inspection(s, record)
    assert "try again" in str(info.value)
    holder.execute("ROLLBACK")
    holder.close()

    with db.Session.begin() as s:  # the retry the UI offers
        repo.add_inspection(s, record)
    with db.Session() as s:
        answers = sorted(r.answer for r in repo.query_inspections(s, repo.InspectionFilter()))
    db.close()
    assert answers == ["before the lock", "written while locked"]


def test_lock_released_within_busy_timeout_just_waits(tmp_path: Path) -> None:
    db = Database.open(tmp_path, busy_timeout_ms=5000)
    holder = sqlite3.connect(tmp_path / "iadgpt.sqlite3", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    with db.Session.begin() as s:
        repo.add_inspection(s, make_record())
    release.join()
    holder.close()
    with db.Session() as s:
        assert repo.count_inspections(s, repo.InspectionFilter()) == 1
    db.close()


def test_full_disk_raises_storage_error_saying_so(db: Database) -> None:
    with db.engine.connect() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar()
        conn.execute(text(f"PRAGMA max_page_count = {pages + 2}"))  # this connection's file cannot grow
        with pytest.raises(StorageError, match="disk is full"), Session(bind=conn) as s:
            repo.add_inspections(s, [make_record(answer="x" * 4000) for _ in range(200)])
            s.commit()
