"""One engine, one session factory and the file store, opened once at start-up.

SQLite is the default (a file in the data folder, WAL journal so the views can read while the worker
writes); any SQLAlchemy URL, such as PostgreSQL for stations sharing one history, is used unchanged.
The schema is brought to the newest Alembic revision on every open.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from iadgpt_desktop.storage.errors import StorageError, translate
from iadgpt_desktop.storage.files import FileStore

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_FILENAME = "iadgpt.sqlite3"


def alembic_config() -> Config:
    """An Alembic config for this package's migrations; pass a connection in `.attributes["connection"]`."""
    config = Config()
    # Config values go through configparser interpolation, where '%' is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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
        engine = create_engine(url, **engine_kwargs)
        where = _describe(engine)
        if engine.dialect.name == "sqlite":
            _prepare_sqlite(engine, busy_timeout_ms)
        _translate_errors(engine, where)
        try:
            upgrade_to_head(engine)
        except CommandError as exc:
            engine.dispose()
            raise StorageError(f"{where} has a schema this version does not know ({exc}); it was probably "
                               f"written by a newer IAD-GPT Desktop. Update the application or choose "
                               f"another database in Settings > Storage.") from exc
        except DatabaseError as exc:
            engine.dispose()
            raise StorageError(f"could not open {where}: {getattr(exc, 'orig', exc)}. Check that the file "
                               f"is an IAD-GPT database and is not damaged, or choose another location in "
                               f"Settings > Storage.") from exc
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


def _translate_errors(engine: Engine, where: str) -> None:
    """Turn "database is locked" and "disk full" from any statement or commit into a StorageError."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        error = translate(context.original_exception, where)
        if error is not None:
            raise error from context.original_exception
