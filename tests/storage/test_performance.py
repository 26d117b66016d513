"""The history view stays fast on a large history: a filtered, sorted page of 100 rows.

Speed is checked by what the database plans to do (the filtered, sorted page is read through an
index, never by scanning and sorting the whole table), not by a stopwatch, which fails on a busy
machine. The timings are printed, and `benchmarks/speed.py` reports them. The 100k-row version (the
size of a few months on one line) is marked slow; a 10k-row version runs by default.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from iadgpt_desktop.storage import Database, InspectionFilter
from iadgpt_desktop.storage import repository as repo
from tests.storage.conftest import make_record

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 1000


def fill(db: Database, n: int) -> tuple[list[int], float]:
    """n inspections over ~n/1000 days on 4 products, inserted in transactions of 1000; returns insert seconds."""
    rng = np.random.default_rng(0)
    with db.Session.begin() as s:
        products = [repo.get_or_create_product(s, f"product-{k}", "bottle") for k in range(4)]
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        records = []
        for i in range(first, min(first + BATCH, n)):
            defective = rng.random() < 0.2
            records.append(make_record(
                created_at=T0 + timedelta(seconds=86.4 * i), product_id=products[i % 4],
                verdict="defective" if defective else "good", score=float(rng.random()),
                image_path=f"images/{i:06d}.png", image_sha256=f"{i:064x}",
                answer="Yes, there is a crack." if defective else "No.",
                defect_types=[("crack", 0.8)] if defective else [], position="top left" if defective else None,
            ))
        with db.Session.begin() as s:
            repo.add_inspections(s, records)
    return products, time.perf_counter() - started


def timed_page(db: Database, flt: InspectionFilter, **kw) -> tuple[float, list]:
    times, rows = [], []
    for _ in range(5):
        with db.Session() as s:
            started = time.perf_counter()
            rows = repo.query_inspections(s, flt, limit=100, **kw)
            times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def check_page_queries(db: Database, products: list[int], n: int) -> dict[str, float]:
    days = n // 1000
    flt = InspectionFilter(start=T0 + timedelta(days=days // 4), end=T0 + timedelta(days=3 * days // 4),
                           product_id=products[1], verdict="defective")
    timings = {}
    timings["product+verdict+range, newest first"], rows = timed_page(db, flt, offset=100)
    assert len(rows) == 100
    assert all(r.verdict == "defective" and r.product_id == products[1] for r in rows)
    assert [r.created_at for r in rows] == sorted((r.created_at for r in rows), reverse=True)

    timings["verdict, by score"], rows = timed_page(db, InspectionFilter(verdict="defective"), order_by="score")
    assert len(rows) == 100 and [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)

    timings["all, newest first, page 50"], rows = timed_page(db, InspectionFilter(), offset=5000)
    assert len(rows) == 100

    # A word no row contains: every row is scanned (reported, not bounded: LIKE cannot use an index).
    timings["text search, no match (full scan)"], rows = timed_page(db, InspectionFilter(text="no-such-word"))
    assert rows == []

    with db.Session() as s:
        started = time.perf_counter()
        total = repo.count_inspections(s, flt)
        timings["count product+verdict+range"] = time.perf_counter() - started
        started = time.perf_counter()
        trend = repo.defect_rate_trend(s, InspectionFilter())
        timings["daily trend, all rows"] = time.perf_counter() - started
    assert 0 < total < n and sum(t for _, t, _ in trend) == n

    for name, seconds in timings.items():
        print(f"{n} rows: {name}: {seconds * 1000:.1f} ms")
    if db.engine.dialect.name == "sqlite":
        plan = _plan(db, InspectionFilter(start=T0, end=T0 + timedelta(days=days), product_id=products[1],
                                          verdict="defective"))
        assert "ix_inspections_product_id_created_at" in plan, plan
        assert "SCAN inspections " not in plan and "TEMP B-TREE FOR ORDER BY" not in plan, plan
        plan = _plan(db, InspectionFilter(), offset=5000)
        assert "ix_inspections_created_at_verdict" in plan and "TEMP B-TREE FOR ORDER BY" not in plan, plan
    return timings


def _plan(db: Database, flt: InspectionFilter, **kw) -> str:
    """SQLite's query plan for one history page (its EXPLAIN QUERY PLAN lines, joined)."""
    from sqlalchemy import text

    stmt = repo._ordered(repo._filtered(repo._select_rows(), flt), "created_at", True).offset(
        kw.get("offset", 0)).limit(100)
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.engine.connect() as conn:
        return " | ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


def test_page_query_on_10k_inspections_uses_the_indexes(tmp_path: Path) -> None:
    with Database.open(tmp_path) as db:
        products, insert_s = fill(db, 10_000)
        print(f"10000 rows inserted in {insert_s:.2f} s")
        check_page_queries(db, products, 10_000)


@pytest.mark.slow
def test_page_query_on_100k_inspections_uses_the_indexes(tmp_path: Path) -> None:
    with Database.open(tmp_path) as db:
        products, insert_s = fill(db, 100_000)
        print(f"100000 rows inserted in {insert_s:.2f} s")
        check_page_queries(db, products, 100_000)
