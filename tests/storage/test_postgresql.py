"""The same history on PostgreSQL (several stations sharing one database).

Uses the server named by `IADGPT_TEST_POSTGRES_URL` (CI starts one; any SQLAlchemy psycopg URL whose
user may create databases), else starts a throwaway server with the local `initdb`/`pg_ctl` as the
`postgres` user; skipped where neither is possible or the psycopg driver is not installed. Each run
works in a fresh database of its own, dropped at the end.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from iadgpt_desktop.storage import Database, InspectionFilter
from iadgpt_desktop.storage import repository as repo
from iadgpt_desktop.storage.models import Base
from tests.storage.conftest import insert_at_revision_0003, make_record, migrating

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ENV_URL = "IADGPT_TEST_POSTGRES_URL"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))  # Debian keeps them off PATH
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database (`postgres`)."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    initdb, pg_ctl = _pg_program("initdb"), _pg_program("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip(f"no {ENV_URL} and the PostgreSQL server programs (initdb, pg_ctl) are not installed")
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to start the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: that is private to root, and the server runs as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="iadgpt-pg-"))
    data = root / "data"
    if run_as:
        shutil.chown(root, "postgres")
    port = _free_port()
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "iadgpt", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"),
                    "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c timezone=Asia/Tokyo", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://iadgpt@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _fresh_database(server: str, *, timezone: str | None = None) -> Iterator[str]:
    """The URL of a new database on the server, dropped at the end (so runs against a shared CI server
    never see each other's rows)."""
    name = f"iadgpt_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
            if timezone is not None:
                conn.execute(text(f"ALTER DATABASE {name} SET timezone TO '{timezone}'"))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="module")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh database on the server, shared by this module's tests."""
    # The server's own time zone differs from UTC here: buckets must still be UTC days.
    with _fresh_database(postgres_server, timezone="Asia/Tokyo") as url:
        yield url


def test_postgresql_history(postgres_url: str, tmp_path: Path) -> None:
    with Database.open(tmp_path, postgres_url) as db:
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    Base.metadata) == []
        with db.Session.begin() as s:
            product = repo.get_or_create_product(s, "bottle", "bottle")
            assert repo.get_or_create_product(s, "bottle", "bottle") == product
            for hours, verdict in [(1, "good"), (2, "defective"), (23, "defective"), (25, "good")]:
                iid = repo.add_inspection(s, make_record(product_id=product, verdict=verdict,
                                                         created_at=T0 + timedelta(hours=hours),
                                                         answer=f"at {hours} h, 50% sure"))
            repo.add_message(s, iid, "user", "why?")
            repo.add_message(s, iid, "assistant", "because.")
            repo.set_operator_decision(s, iid, "confirmed", operator="ana")
        with db.Session() as s:
            # The server runs in Tokyo time; buckets are still UTC days.
            assert repo.defect_rate_trend(s, InspectionFilter()) == [(T0, 3, 2), (T0 + timedelta(days=1), 1, 0)]
            assert len(repo.defect_rate_trend(s, InspectionFilter(), bucket="hour")) == 4
            rows = repo.query_inspections(s, InspectionFilter(text="50%", decision="undecided"), order_by="product")
            assert [r.created_at for r in rows] == [T0 + timedelta(hours=h) for h in (23, 2, 1)]
            assert repo.count_inspections(s, InspectionFilter(decision="confirmed")) == 1
            assert [m.content for m in repo.get_conversation(s, iid)] == ["why?", "because."]
            # a reopened folder's earlier results: the newest row of each image, picked by the server
            newest = repo.query_inspections(s, InspectionFilter(), limit=1)[0]
            assert repo.latest_inspections_of(s, [newest.image_sha256], 10) == [(newest.id, newest.image_sha256)]
        with db.Session.begin() as s:
            assert repo.delete_inspection(s, iid)
    with Database.open(tmp_path, postgres_url) as db:  # re-running the migrations is a no-op
        with db.Session() as s:
            assert repo.count_inspections(s, InspectionFilter()) == 3
            assert repo.get_conversation(s, iid) == []  # cascaded


def test_two_stations_write_at_once(postgres_url: str, tmp_path: Path) -> None:
    """Two stations (separate engines and connection pools) insert 200 inspections each at the same time."""
    per_station = 200
    with Database.open(tmp_path / "a", postgres_url) as first:  # migrates
        with first.Session.begin() as s:
            product = repo.get_or_create_product(s, "ball screw drive", "ball_screw_drive")
            start_count = repo.count_inspections(s, InspectionFilter())
    stations = [Database.open(tmp_path / name, postgres_url, pool_size=2) for name in ("a", "b")]
    barrier = threading.Barrier(len(stations))
    errors: list[BaseException] = []

    def write(db: Database, station: str) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(per_station):
                with db.Session.begin() as s:  # one transaction per inspection, as the worker does
                    repo.add_inspection(s, make_record(
                        source=f"camera:{station}", product_id=product, image_sha256=f"{i:064x}",
                        verdict="defective" if i % 4 == 0 else "good",
                        created_at=T0 + timedelta(seconds=i)))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(db, name)) for db, name in zip(stations, "ab", strict=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        assert errors == []
        with stations[0].Session() as s:
            assert repo.count_inspections(s, InspectionFilter()) == start_count + 2 * per_station
            rows = repo.query_inspections(s, InspectionFilter(product_id=product), limit=10_000)
        assert len({r.id for r in rows}) == len(rows) == 2 * per_station
        for station in "ab":
            mine = [r for r in rows if r.source == f"camera:{station}"]
            assert len(mine) == per_station
            assert len({r.image_sha256 for r in mine}) == per_station
            assert sum(r.verdict == "defective" for r in mine) == per_station // 4
    finally:
        for db in stations:
            db.close()


def test_a_postgresql_history_at_the_previous_head_gains_the_reference_columns(postgres_server: str,
                                                                               tmp_path: Path) -> None:
    """Revision 0004 on PostgreSQL: an 0003 history upgrades, old rows read with no reference, and back."""
    with _fresh_database(postgres_server) as url:
        engine = create_engine(url)
        with migrating(engine) as (conn, config):
            command.upgrade(config, "0003_batch_claims")
            insert_at_revision_0003(conn)
        with Database.open(tmp_path, url) as db:
            with db.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                        Base.metadata) == []
            with db.Session.begin() as s:
                [old] = repo.query_inspections(s, InspectionFilter())
                new = repo.add_inspection(s, make_record(reference_name="good_030.png", reference_similarity=0.98))
            with db.Session() as s:
                row = repo.get_inspection(s, new)
        assert (old.reference_name, old.reference_similarity) == (None, None)
        assert (row.reference_name, row.reference_similarity) == ("good_030.png", pytest.approx(0.98))
        with migrating(engine) as (conn, config):
            command.downgrade(config, "0003_batch_claims")
            columns = {c["name"] for c in inspect(conn).get_columns("inspections")}
        assert not columns & {"reference_name", "reference_path", "reference_similarity"}
        engine.dispose()
