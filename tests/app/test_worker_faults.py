"""Every storage fault at the worker boundary: the result is shown, marked "not saved: <reason>", kept.

Transient faults (locked or busy database, server down) are retried with back-off; permanent ones (a
damaged or read-only database, a NaN the schema refuses, a path PostgreSQL cannot hold) are reported
once and set aside without blocking the results behind them. Unsaved results go to an fsynced journal
in the data folder and are stored at the next start. SQLite always; PostgreSQL with a server (see
tests/storage/test_postgresql.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import event, text

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.journal import Journal
from iadgpt_desktop.storage.records import InspectionFilter
from iadgpt_desktop.workers.inference import InferenceWorker
from iadgpt_desktop.workers.sources import Frame
from tests.storage.test_postgresql import postgres_server, postgres_url  # noqa: F401 - fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return ""


def _worker(tmp_path, url: str = "") -> InferenceWorker:
    w = InferenceWorker(Settings(preset="tiny-test", device="cpu", data_dir=str(tmp_path / "data"),
                                 database_url=url, generate_answers=False))
    w._open_storage()
    w._replay_journal()
    w._load_model()
    return w


@pytest.fixture
def worker(tmp_path, backend, qtbot) -> Iterator[InferenceWorker]:
    w = _worker(tmp_path, backend)
    yield w
    w.shutdown()


def _frame(i: int, source: str = "camera:test") -> Frame:
    image = (np.random.default_rng(i).random((64, 80, 3)) * 255).astype(np.uint8)
    return Frame(source=source, index=i, timestamp=time.time(), image=image)


def _count(w: InferenceWorker) -> int:
    with w.db.Session() as s:
        return repository.count_inspections(s, InspectionFilter())


def _listen(w: InferenceWorker) -> tuple[list, list]:
    shown, messages = [], []
    w.result.connect(shown.append)
    w.storage_message.connect(lambda msg: messages.append(("storage", msg)))
    return shown, messages


def _retry_now(w: InferenceWorker) -> None:
    for item in w._saves.waiting:
        item.next_at = 0.0
    w._retry_unsaved()


def _nan_score(w: InferenceWorker, monkeypatch) -> None:
    real = w.inspector.inspect

    def inspect(*a, **k):
        result = real(*a, **k)
        result.score = float("nan")
        return result
    monkeypatch.setattr(w.inspector, "inspect", inspect)


def test_a_permanent_failure_is_reported_once_and_does_not_block_the_others(worker, monkeypatch) -> None:
    shown, messages = _listen(worker)
    before = _count(worker)  # PostgreSQL: the module shares one database
    if worker.db.engine.dialect.name == "sqlite":
        _nan_score(worker, monkeypatch)  # NaN lands as NULL in a NOT NULL column
        bad = worker.inspect_frame(_frame(0))
        monkeypatch.undo()
    else:
        bad = worker.inspect_frame(_frame(0, source="folder:/" + "x" * 1100))  # over varchar(1024)
    assert bad is not None and shown == [bad] and bad.inspection_id is None
    assert bad.not_saved and messages[-1][1].startswith("not saved: ") and "set aside" in messages[-1][1]
    reported = len(messages)
    good = [worker.inspect_frame(_frame(i)) for i in (1, 2, 3)]
    _retry_now(worker)
    assert all(o.inspection_id is not None and o.not_saved is None for o in good)
    assert _count(worker) == before + 3 and len(messages) == reported  # reported once, never retried in a loop
    assert worker.unsaved_summary() and "1 shown result(s) are not saved" in worker.unsaved_summary()
    assert len(Journal(worker.settings.data_path).pending()) == 1  # kept on disk for the next start


def test_read_only_database_is_a_sentence_and_the_result_is_kept(worker, tmp_path) -> None:
    shown, messages = _listen(worker)
    before = _count(worker)
    engine = worker.db.engine
    statement = "PRAGMA query_only = ON" if engine.dialect.name == "sqlite" else \
        "SET default_transaction_read_only = on"

    @event.listens_for(engine, "connect")
    def read_only(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        if engine.dialect.name != "sqlite":
            dbapi_connection.commit()
    engine.dispose()
    outcome = worker.inspect_frame(_frame(4))
    assert shown == [outcome] and outcome.inspection_id is None
    assert "read-only" in outcome.not_saved or "read-only" in messages[-1][1]
    event.remove(engine, "connect", read_only)
    engine.dispose()
    # It was set aside (permanent) but kept in the journal: the next start stores it.
    worker.shutdown()
    again = _worker(tmp_path, worker.settings.database_url)
    try:
        assert _count(again) == before + 1 and Journal(again.settings.data_path).pending() == {}
    finally:
        again.shutdown()


def test_damaged_sqlite_file_is_a_sentence_and_results_come_back_at_next_start(tmp_path, qtbot) -> None:
    w = _worker(tmp_path)
    shown, messages = _listen(w)
    db_file = tmp_path / "data" / "iadgpt.sqlite3"
    w.db.engine.dispose()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "data" / f"iadgpt.sqlite3{suffix}").unlink(missing_ok=True)
    db_file.write_bytes(b"this is not a database" * 400)
    outcomes = [w.inspect_frame(_frame(i)) for i in range(3)]
    assert len(shown) == 3 and all(o.inspection_id is None for o in outcomes)
    assert "is not an IAD-GPT database or is damaged" in outcomes[0].not_saved
    assert sum("not saved" in m for _, m in messages) == 3
    w.shutdown()  # "closing": nothing is lost, the journal holds all three
    assert len(Journal(tmp_path / "data").pending()) == 3
    db_file.unlink()  # the user moves the damaged file aside; the next start makes a new history
    again = _worker(tmp_path)
    try:
        assert _count(again) == 3 and not (tmp_path / "data" / "unsaved-results.jsonl").exists()
    finally:
        again.shutdown()


def test_locked_then_free_is_retried_with_back_off(tmp_path, qtbot) -> None:
    w = _worker(tmp_path)
    w.db.close()
    from iadgpt_desktop.storage.db import Database

    w.db = Database.open(tmp_path / "data", busy_timeout_ms=50)
    shown, messages = _listen(w)
    now = [1000.0]
    w._saves.clock = lambda: now[0]  # the queue's own clock, so the back-off is checked exactly
    blocker = w.db.engine.raw_connection()
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    try:
        outcome = w.inspect_frame(_frame(5))
        assert outcome.inspection_id is None and "locked" in outcome.not_saved
        item = w._saves.waiting[0]
        assert item.next_at == 1001.0  # first retry after 1 s
        w._retry_unsaved()
        assert item.attempts == 1  # not due yet: not tried
        now[0] = 1001.0
        w._retry_unsaved()
        assert item.attempts == 2 and item.next_at == 1003.0  # backs off: 2 s
        now[0] = 1003.0
        w._retry_unsaved()
        assert item.attempts == 3 and item.next_at == 1007.0  # 4 s
    finally:
        blocker.rollback()
        blocker.close()
    later = []
    w.saved_later.connect(later.append)
    now[0] = 1007.0
    w._retry_unsaved()
    try:
        assert later == [outcome] and outcome.inspection_id is not None and _count(w) == 1
        assert messages[-1][1] == "storage is back: 1 delayed result(s) saved"
    finally:
        w.shutdown()


# ---- PostgreSQL: a table lock, a server that goes away --------------------------------------------


def test_postgresql_table_lock_is_a_retryable_busy_error(postgres_url, tmp_path, qtbot, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr("iadgpt_desktop.storage.db.PG_LOCK_TIMEOUT_MS", 300)
    w = _worker(tmp_path, postgres_url)
    shown, messages = _listen(w)
    before = _count(w)
    locker = w.db.engine.connect()
    transaction = locker.begin()
    locker.execute(text("LOCK TABLE inspections IN ACCESS EXCLUSIVE MODE"))
    try:
        outcome = w.inspect_frame(_frame(6))  # returns after lock_timeout instead of hanging
        assert outcome.inspection_id is None and "is busy" in outcome.not_saved
        assert w._saves.waiting and not w._saves.set_aside
    finally:
        transaction.rollback()
        locker.close()
    _retry_now(w)
    try:
        assert outcome.inspection_id is not None and _count(w) == before + 1
    finally:
        w.shutdown()


class _Proxy:
    """A TCP relay to the PostgreSQL server that can be cut (the server 'goes down') and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()

    def close(self) -> None:
        self.cut()
        self.sock.close()


def test_postgresql_going_down_keeps_results_and_saves_them_when_back(postgres_url, tmp_path, qtbot) -> None:  # noqa: F811
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    proxy = _Proxy((url.host, url.port))
    w = _worker(tmp_path, url.set(port=proxy.port).render_as_string(hide_password=False))
    try:
        shown, messages = _listen(w)
        before = _count(w)
        assert w.inspect_frame(_frame(7)).inspection_id is not None
        proxy.cut()
        down = [w.inspect_frame(_frame(i)) for i in (8, 9)]
        assert len(shown) == 3 and all(o.inspection_id is None for o in down)
        assert "cannot reach" in down[0].not_saved and len(w._saves.waiting) == 2
        proxy.up = True
        _retry_now(w)
        assert all(o.inspection_id is not None for o in down) and _count(w) == before + 3
    finally:
        w.shutdown()
        proxy.close()
