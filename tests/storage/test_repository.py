"""Products, inspections, filters, paging, operator decisions, conversations and trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select

from iadgpt_desktop.storage import Database, InspectionFilter, NotFoundError
from iadgpt_desktop.storage import repository as repo
from iadgpt_desktop.storage.models import Conversation, Inspection, Message, Product
from tests.storage.conftest import make_record

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def history(db: Database) -> dict[str, int]:
    """Ten inspections over three days on two products, with answers, positions, notes and decisions."""
    ids: dict[str, int] = {}
    with db.Session.begin() as s:
        bottle = repo.get_or_create_product(s, "bottle", "bottle")
        cable = repo.get_or_create_product(s, "cable", "cable")
        specs = [
            # name, product, hours after T0, verdict, score, answer extra, decision
            ("b0", bottle, 1, "good", 0.10, "", None),
            ("b1", bottle, 2, "defective", 0.90, "crack near the neck", "confirmed"),
            ("b2", bottle, 5, "defective", 0.70, "", "overridden_good"),
            ("c0", cable, 3, "good", 0.20, "", None),
            ("c1", cable, 26, "defective", 0.95, "poke insulation", None),
            ("c2", cable, 27, "good", 0.15, "", "confirmed"),
            ("b3", bottle, 28, "defective", 0.60, "", None),
            ("b4", bottle, 50, "good", 0.05, "100% fine", None),
            ("x0", None, 51, "defective", 0.85, "", "overridden_defective"),
            ("x1", None, 52, "good", 0.30, "", None),
        ]
        for name, product, hours, verdict, score, extra, decision in specs:
            defect_types = [("crack", 0.8), ("scratch", 0.1)] if verdict == "defective" else []
            ids[name] = repo.add_inspection(s, make_record(
                product_id=product, created_at=T0 + timedelta(hours=hours), verdict=verdict, score=score,
                answer=f"Inspection {name}. {extra}", image_path=f"images/{name}.png", defect_types=defect_types,
                position="top left" if verdict == "defective" else None, latency_ms=100 - score * 10,
                image_sha256=name * 32,
            ))
            if decision:
                repo.set_operator_decision(s, ids[name], decision, operator="ana")
        ids["bottle"], ids["cable"] = bottle, cable
    return ids


def names(rows: list, ids: dict[str, int]) -> list[str]:
    by_id = {v: k for k, v in ids.items() if len(k) == 2}
    return [by_id[r.id] for r in rows]


def query(db: Database, flt: InspectionFilter, **kw) -> list:
    with db.Session() as s:
        return repo.query_inspections(s, flt, **kw)


def test_products_are_created_once_listed_and_updated(db: Database) -> None:
    with db.Session.begin() as s:
        a = repo.get_or_create_product(s, "bottle", "bottle")
        assert repo.get_or_create_product(s, "bottle", "other") == a
        b = repo.get_or_create_product(s, "cable", "cable")
        repo.update_product(s, b, mode="few-shot", prompt_bank_json='{"x": 1}', memory_bank_path="banks/c.npz",
                            reference_paths_json='["/refs/a.png"]')
    with db.Session.begin() as s:
        products = repo.list_products(s)
        assert [p["name"] for p in products] == ["bottle", "cable"]
        assert products[1] | {"created_at": None} == {
            "id": b, "name": "cable", "class_name": "cable", "mode": "few-shot", "prompt_bank_json": '{"x": 1}',
            "memory_bank_path": "banks/c.npz", "reference_paths_json": '["/refs/a.png"]', "created_at": None}
        with pytest.raises(ValueError, match="mode"):
            repo.update_product(s, a, mode="magic")
        with pytest.raises(TypeError, match="colour"):
            repo.update_product(s, a, colour="red")
        with pytest.raises(NotFoundError):
            repo.update_product(s, 999, name="x")


def test_time_range_filter(db: Database, history: dict[str, int]) -> None:
    flt = InspectionFilter(start=T0 + timedelta(hours=24), end=T0 + timedelta(hours=48))
    assert names(query(db, flt, descending=False), history) == ["c1", "c2", "b3"]
    # the end is exclusive, the start inclusive, and naive times are read as UTC
    flt = InspectionFilter(start=datetime(2026, 3, 1, 2), end=datetime(2026, 3, 1, 5))
    assert names(query(db, flt, descending=False), history) == ["b1", "c0"]
    # an aware time in another zone is converted
    flt = InspectionFilter(start=datetime(2026, 3, 3, 4, 0, tzinfo=timezone(timedelta(hours=2))))  # 02:00 UTC
    assert names(query(db, flt, descending=False), history) == ["b4", "x0", "x1"]


def test_product_verdict_decision_filters(db: Database, history: dict[str, int]) -> None:
    assert names(query(db, InspectionFilter(product_id=history["cable"])), history) == ["c2", "c1", "c0"]
    assert names(query(db, InspectionFilter(verdict="defective", product_id=history["bottle"])),
                 history) == ["b3", "b2", "b1"]
    assert set(names(query(db, InspectionFilter(decision="confirmed")), history)) == {"b1", "c2"}
    assert set(names(query(db, InspectionFilter(decision="undecided")), history)) == {
        "b0", "c0", "c1", "b3", "b4", "x1"}
    assert names(query(db, InspectionFilter(decision="overridden_defective")), history) == ["x0"]
    with pytest.raises(ValueError, match="decision"):
        query(db, InspectionFilter(decision="maybe"))
    with pytest.raises(ValueError, match="verdict"):
        query(db, InspectionFilter(verdict="bad"))


def test_text_search_looks_in_answer_path_position_defect_types_and_note(db: Database,
                                                                           history: dict[str, int]) -> None:
    with db.Session.begin() as s:
        repo.set_operator_decision(s, history["x1"], "confirmed", operator="bo", note="Smudge on LENS")
    assert names(query(db, InspectionFilter(text="NECK")), history) == ["b1"]  # answer, any case
    assert names(query(db, InspectionFilter(text="images/c1")), history) == ["c1"]  # image path
    assert len(query(db, InspectionFilter(text="top left"))) == 5  # position
    assert len(query(db, InspectionFilter(text="scratch"))) == 5  # defect types
    assert names(query(db, InspectionFilter(text="lens")), history) == ["x1"]  # note
    assert names(query(db, InspectionFilter(text="100%")), history) == ["b4"]  # % is literal, not a wildcard
    assert query(db, InspectionFilter(text="no such words")) == []


def test_sorting_and_paging(db: Database, history: dict[str, int]) -> None:
    by_score = names(query(db, InspectionFilter(), order_by="score"), history)
    assert by_score == ["c1", "b1", "x0", "b2", "b3", "x1", "c0", "c2", "b0", "b4"]
    ascending = names(query(db, InspectionFilter(), order_by="score", descending=False), history)
    assert ascending == by_score[::-1]
    pages = [names(query(db, InspectionFilter(), order_by="score", offset=o, limit=4), history) for o in (0, 4, 8)]
    assert pages == [by_score[:4], by_score[4:8], by_score[8:]]
    by_product = query(db, InspectionFilter(), order_by="product", descending=False)
    assert [r.product_name for r in by_product] == ["bottle"] * 5 + ["cable"] * 3 + [None] * 2
    by_latency = query(db, InspectionFilter(), order_by="latency_ms", descending=False)
    assert [r.latency_ms for r in by_latency] == sorted(r.latency_ms for r in by_latency)
    newest = query(db, InspectionFilter(), limit=1)[0]
    assert names([newest], history) == ["x1"]
    by_id = names(query(db, InspectionFilter(), order_by="id", descending=False), history)
    assert by_id == ["b0", "b1", "b2", "c0", "c1", "c2", "b3", "b4", "x0", "x1"]  # the order they were stored
    assert names(query(db, InspectionFilter(), order_by="id"), history) == by_id[::-1]
    for key in ("verdict", "operator_decision", "created_at"):
        assert len(query(db, InspectionFilter(), order_by=key)) == 10
    with pytest.raises(ValueError, match="sort"):
        query(db, InspectionFilter(), order_by="id; DROP TABLE inspections")


def test_count_matches_the_filtered_rows(db: Database, history: dict[str, int]) -> None:
    filters = [InspectionFilter(), InspectionFilter(verdict="defective"), InspectionFilter(decision="undecided"),
               InspectionFilter(product_id=history["bottle"], text="inspection"),
               InspectionFilter(start=T0 + timedelta(hours=24))]
    with db.Session() as s:
        for flt in filters:
            assert repo.count_inspections(s, flt) == len(repo.query_inspections(s, flt, limit=1000))
        assert repo.count_inspections(s, InspectionFilter()) == 10


def test_operator_decision_is_stored_and_invalid_one_rejected(db: Database, history: dict[str, int]) -> None:
    with db.Session.begin() as s:
        repo.set_operator_decision(s, history["c1"], "overridden_good", operator="ana", note="dust, not a defect")
    with db.Session() as s:
        row = repo.get_inspection(s, history["c1"])
    assert (row.operator_decision, row.operator, row.note) == ("overridden_good", "ana", "dust, not a defect")
    assert row.decided_at is not None and abs(row.decided_at - datetime.now(UTC)) < timedelta(minutes=1)

    with db.Session.begin() as s:
        with pytest.raises(ValueError, match="operator decision 'approved'"):
            repo.set_operator_decision(s, history["c1"], "approved")
        with pytest.raises(NotFoundError):
            repo.set_operator_decision(s, 12345, "confirmed")
    with db.Session.begin() as s:
        repo.set_operator_decision(s, history["c1"], None)  # undo
    with db.Session() as s:
        row = repo.get_inspection(s, history["c1"])
        assert (row.operator_decision, row.operator, row.decided_at) == (None, None, None)
        assert row.note == "dust, not a defect"
        assert repo.get_inspection(s, 12345) is None


def test_invalid_verdict_is_rejected(db: Database) -> None:
    with db.Session.begin() as s, pytest.raises(ValueError, match="verdict"):
        repo.add_inspection(s, make_record(verdict="broken"))


def test_conversation_kept_in_order_and_deleted_with_its_inspection(db: Database, history: dict[str, int]) -> None:
    turns = [("user", "Is it defective?"), ("assistant", "Yes, a crack."), ("user", "Where?"),
             ("assistant", "Top left, near the neck.")]
    with db.Session.begin() as s:
        for role, content in turns:
            repo.add_message(s, history["b1"], role, content)
        repo.add_message(s, history["c1"], "user", "Other inspection")
        with pytest.raises(ValueError, match="role"):
            repo.add_message(s, history["b1"], "system", "nope")
        with pytest.raises(NotFoundError):
            repo.add_message(s, 12345, "user", "nobody")
    with db.Session() as s:
        messages = repo.get_conversation(s, history["b1"])
        assert [(m.role, m.content) for m in messages] == turns
        assert [m.created_at for m in messages] == sorted(m.created_at for m in messages)
        assert repo.get_conversation(s, history["b0"]) == []

    with db.Session.begin() as s:  # a plain SQL delete: the database itself cascades
        s.execute(delete(Inspection).where(Inspection.id == history["b1"]))
    with db.Session.begin() as s:
        assert repo.delete_inspection(s, history["c1"]) is True
        assert repo.delete_inspection(s, history["c1"]) is False
    with db.Session() as s:
        assert repo.get_conversation(s, history["b1"]) == []
        assert s.scalar(select(func.count()).select_from(Conversation)) == 0
        assert s.scalar(select(func.count()).select_from(Message)) == 0


def test_deleting_a_product_keeps_its_inspections(db: Database, history: dict[str, int]) -> None:
    with db.Session.begin() as s:
        s.execute(delete(Product).where(Product.id == history["cable"]))
    with db.Session() as s:
        row = repo.get_inspection(s, history["c0"])
    assert row.product_id is None and row.product_name is None


def test_trend_counts_totals_and_defectives_per_day_and_hour(db: Database, history: dict[str, int]) -> None:
    with db.Session() as s:
        days = repo.defect_rate_trend(s, InspectionFilter())
        bottle_days = repo.defect_rate_trend(s, InspectionFilter(product_id=history["bottle"]))
        hours = repo.defect_rate_trend(s, InspectionFilter(end=T0 + timedelta(days=1)), bucket="hour")
        with pytest.raises(ValueError, match="bucket"):
            repo.defect_rate_trend(s, InspectionFilter(), bucket="week")
    assert days == [(T0, 4, 2), (T0 + timedelta(days=1), 3, 2), (T0 + timedelta(days=2), 3, 1)]
    assert bottle_days == [(T0, 3, 2), (T0 + timedelta(days=1), 1, 1), (T0 + timedelta(days=2), 1, 0)]
    assert hours == [(T0 + timedelta(hours=h), 1, int(h in (2, 5))) for h in (1, 2, 3, 5)]


def test_processed_image_hashes_per_source(db: Database) -> None:
    with db.Session.begin() as s:
        repo.add_inspections(s, [make_record(source="folder:/a", image_sha256=c * 64) for c in "abc"])
        repo.add_inspection(s, make_record(source="folder:/a", image_sha256="a" * 64))  # re-inspected
        repo.add_inspection(s, make_record(source="camera:0", image_sha256="d" * 64))
    with db.Session() as s:
        assert repo.processed_image_hashes(s, "folder:/a") == {"a" * 64, "b" * 64, "c" * 64}
        assert repo.processed_image_hashes(s, "folder:/b") == set()


def test_bulk_insert_returns_ids_in_order(db: Database) -> None:
    records = [make_record(answer=f"n{i}") for i in range(50)]
    with db.Session.begin() as s:
        ids = repo.add_inspections(s, records)
        assert repo.add_inspections(s, []) == []
    with db.Session() as s:
        assert [repo.get_inspection(s, i).answer for i in ids] == [f"n{i}" for i in range(50)]


def test_record_from_an_inspection_result() -> None:
    from types import SimpleNamespace

    from iadgpt_desktop.storage import InspectionRecord

    result = SimpleNamespace(image_size=(48, 64), score=0.9, score_top1=0.8, p_yes=0.95, verdict="defective",
                             answer="Yes.", model_id="tiny-test", mode="few-shot", latency_ms=33.0,
                             position="center", defect_types=[("crack", 0.7)])
    record = InspectionRecord.from_result(result, source="file", image_path="images/a.png", image_sha256="f" * 64,
                                          mask_path="masks/m.png", product_id=3)
    assert (record.width, record.height, record.verdict, record.product_id) == (64, 48, "defective", 3)
    assert record.defect_types == [("crack", 0.7)] and record.created_at.tzinfo is not None


def test_latest_inspections_of_images_is_the_newest_of_each_newest_first(db: Database) -> None:
    """What a reopened folder shows: one inspection per image content (its most recent), newest first."""
    with db.Session.begin() as s:
        old_a = repo.add_inspection(s, make_record(image_sha256="a" * 64, created_at=T0))
        new_a = repo.add_inspection(s, make_record(image_sha256="a" * 64, created_at=T0 + timedelta(hours=5),
                                                   source="files"))
        b = repo.add_inspection(s, make_record(image_sha256="b" * 64, created_at=T0 + timedelta(hours=2)))
        repo.add_inspection(s, make_record(image_sha256="c" * 64, created_at=T0 + timedelta(hours=9)))
    with db.Session() as s:
        assert repo.latest_inspections_of(s, ["a" * 64, "b" * 64, "d" * 64], 10) == [(new_a, "a" * 64),
                                                                                   (b, "b" * 64)]
        assert repo.latest_inspections_of(s, ["a" * 64, "b" * 64], 1) == [(new_a, "a" * 64)]
        assert repo.latest_inspections_of(s, ["b" * 64, "a" * 64], 10, chunk=1) == [(new_a, "a" * 64),
                                                                                  (b, "b" * 64)]
        assert repo.latest_inspections_of(s, [], 10) == []
        assert old_a not in [i for i, _ in repo.latest_inspections_of(s, ["a" * 64], 10)]
