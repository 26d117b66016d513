"""The same history on PostgreSQL (several stations sharing one database).

Starts a throwaway server with the local `initdb`/`pg_ctl` as the `postgres` user; skipped where
PostgreSQL or the psycopg driver is not installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from iadgpt_desktop.storage import Database, InspectionFilter
from iadgpt_desktop.storage import repository as repo
from iadgpt_desktop.storage.models import Base
from tests.storage.conftest import make_record

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server programs (initdb, pg_ctl) are not installed")
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
        with db.Session.begin() as s:
            assert repo.delete_inspection(s, iid)
    with Database.open(tmp_path, postgres_url) as db:  # re-running the migrations is a no-op
        with db.Session() as s:
            assert repo.count_inspections(s, InspectionFilter()) == 3
            assert repo.get_conversation(s, iid) == []  # cascaded
