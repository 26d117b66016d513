"""One engine, one session factory and the file store, opened once at start-up.

SQLite is the default (a file in the data folder, WAL journal so the views can read while the worker
writes); any SQLAlchemy URL, such as PostgreSQL for stations sharing one history, is used unchanged.
The schema is brought to the newest Alembic revision on every open, by one process at a time (a lock
file beside an SQLite database, an advisory lock on PostgreSQL), so two stations or batch runs that
create a fresh database together do not race. PostgreSQL sessions get a lock_timeout and a
statement_timeout, so a table locked by another station becomes a retryable "busy" error instead of a
silent hang.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from filelock import FileLock, Timeout
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from iadgpt_desktop.storage.errors import StorageError, damaged_error, translate
from iadgpt_desktop.storage.files import FileStore

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_FILENAME = "iadgpt.sqlite3"
PG_LOCK_TIMEOUT_MS = 5000  # waiting for a row or table lock another station holds
PG_STATEMENT_TIMEOUT_MS = 60000  # any one statement
_MIGRATION_LOCK_ID = 0x1AD6_0001  # pg_advisory_xact_lock key: one migrating process at a time


def alembic_config() -> Config:
    """An Alembic config for this package's migrations; pass a connection in `.attributes["connection"]`."""
    config = Config()
    # Config values go through configparser interpolation, where '%' is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Migrate to the newest revision; concurrent callers wait for each other instead of racing."""
    config = alembic_config()
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _migration_lock(engine: Engine, timeout_s: float = 120.0) -> FileLock | _NoLock:
    """A lock file beside an SQLite database file; nothing for other databases (they lock in SQL)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return _NoLock()
    lock_path = Path(database).expanduser().with_name(Path(database).name + ".migrate-lock")
    try:
        lock_path.touch(exist_ok=True)
    except OSError:  # a read-only folder: nothing can be migrated there anyway, opening will say why
        return _NoLock()
    return FileLock(str(lock_path), timeout=timeout_s)


class Database:
    """The inspection history: `engine`, `Session` (a sessionmaker), `files` (a FileStore) and `url`.

    Use `with db.Session.begin() as s:` around each unit of work, one Session per thread.
    """

    def __init__(self, engine: Engine, files: FileStore, url: str) -> None:
        self.engine = engine
        self.Session: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        self.files = files
        self.url = url

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None, *, busy_timeout_ms: int = 5000,
             **engine_kwargs: Any) -> Database:
        """Open (creating if needed) the history in `data_dir`, migrated to the newest schema.

        `url` defaults to `sqlite:///<data_dir>/iadgpt.sqlite3`. `busy_timeout_ms` is how long an SQLite
        write waits for another writer before failing with a "locked" StorageError.
        """
        data_dir = Path(data_dir).expanduser().resolve()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"could not create the data folder {data_dir}: {exc}; choose another "
                               f"location in Settings > Storage") from exc
        if url is None:
            url = URL.create("sqlite", database=str(data_dir / DB_FILENAME)).render_as_string()
        try:
            engine = create_engine(url, **({} if url.startswith("sqlite") else {"pool_pre_ping": True})
                                   | engine_kwargs)
        except Exception as exc:  # noqa: BLE001 - an unknown scheme, a missing driver, a malformed URL
            raise StorageError(f"the database URL {_safe_url(url)} cannot be used ({exc}); give "
                               f"sqlite:///PATH, postgresql+psycopg://USER@HOST/NAME, or a data folder") from exc
        where = _describe(engine)
        if engine.dialect.name == "sqlite":
            _prepare_sqlite(engine, busy_timeout_ms)
        elif engine.dialect.name == "postgresql":
            _prepare_postgresql(engine)
        _translate_errors(engine, where)
        try:
            upgrade_to_head(engine)
        except Timeout as exc:
            engine.dispose()
            raise StorageError(f"{where} is being set up by another program that did not finish within "
                               f"two minutes; close it or wait, then try again",
                               transient=True) from exc
        except StorageError:
            engine.dispose()
            raise
        except CommandError as exc:
            engine.dispose()
            raise StorageError(f"{where} has a schema this version does not know ({exc}); it was probably "
                               f"written by a newer IAD-GPT Desktop. Update the application or choose "
                               f"another database in Settings > Storage.") from exc
        except DatabaseError as exc:
            engine.dispose()
            raise translate(exc, where) or damaged_error(where, exc) from exc
        except BaseException:
            engine.dispose()
            raise
        log.info("opened %s", where)
        return cls(engine, FileStore(data_dir), url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"the inspection database {url.database or ':memory:'}"
    return f"the inspection database {url.render_as_string(hide_password=True)}"


def _prepare_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    database = make_url(str(engine.url)).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL: readers (the history view) never block the writer (the inspection worker).
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not even parseable: show it without anything after '@'
        return url.split("@")[-1]


def _prepare_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET lock_timeout = {PG_LOCK_TIMEOUT_MS}")
            cursor.execute(f"SET statement_timeout = {PG_STATEMENT_TIMEOUT_MS}")
        finally:
            cursor.close()
        dbapi_connection.commit()  # a SET inside a transaction that is rolled back would be undone


def _translate_errors(engine: Engine, where: str) -> None:
    """Turn known failures (locked, busy, disk full, unreachable, damaged, read-only) into a StorageError."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        error = translate(context.original_exception, where)
        if error is not None:
            raise error from context.original_exception
