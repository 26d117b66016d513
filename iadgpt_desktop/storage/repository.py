"""Reading and writing the inspection history.

Every function takes a Session; callers wrap each unit of work in `with db.Session.begin() as s:` and
get plain dataclasses back, never ORM objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, delete, func, insert, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from iadgpt_desktop.storage.errors import NotFoundError, StorageError, translate
from iadgpt_desktop.storage.models import BatchClaim, Conversation, Inspection, Message, Product
from iadgpt_desktop.storage.records import (
    DECISIONS,
    PRODUCT_MODES,
    ROLES,
    UNDECIDED,
    VERDICTS,
    InspectionFilter,
    InspectionRecord,
    InspectionRow,
    MessageRow,
    utc_now,
)

ORDER_COLUMNS = {
    "created_at": Inspection.created_at,
    "score": Inspection.score,
    "verdict": Inspection.verdict,
    "product": Product.name,
    "operator_decision": Inspection.operator_decision,
    "latency_ms": Inspection.latency_ms,
    "file_name": Inspection.file_name,
    "id": Inspection.id,
}
PRODUCT_FIELDS = ("name", "class_name", "mode", "prompt_bank_json", "memory_bank_path", "reference_paths_json")
TREND_BUCKETS = ("day", "hour")
BATCH_SOURCES = ("cli:", "folder:")  # sources whose images are stored once each (a rerun resumes)


@contextmanager
def _writing() -> Iterator[None]:
    """Report a locked database or a full disk as a StorageError with a sentence a person can act on."""
    try:
        yield
    except (DBAPIError, OSError) as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from exc


# ---- products ------------------------------------------------------------------------------------


def get_or_create_product(s: Session, name: str, class_name: str) -> int:
    """The id of the product called `name`, created (mode "trained") if there is none yet."""
    existing = s.scalar(select(Product.id).where(Product.name == name))
    if existing is not None:
        return existing
    values = {"name": name, "class_name": class_name, "mode": "trained", "created_at": utc_now()}
    with _writing():
        dialect = s.get_bind().dialect.name
        if dialect in ("sqlite", "postgresql"):
            # Another station may create the same product at the same moment; ON CONFLICT keeps the
            # caller's transaction usable (SQLite savepoints are unreliable under pysqlite).
            dialect_insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
            s.execute(dialect_insert(Product).values(**values).on_conflict_do_nothing(index_elements=["name"]))
        else:
            with s.begin_nested():
                s.execute(insert(Product).values(**values))
    return s.scalars(select(Product.id).where(Product.name == name)).one()


def update_product(s: Session, product_id: int, **fields: Any) -> None:
    """Change some of a product's name, class_name, mode, prompt_bank_json, memory_bank_path."""
    unknown = set(fields) - set(PRODUCT_FIELDS)
    if unknown:
        raise TypeError(f"update_product got unknown field(s) {sorted(unknown)}; known: {list(PRODUCT_FIELDS)}")
    if "mode" in fields and fields["mode"] not in PRODUCT_MODES:
        raise ValueError(f"product mode '{fields['mode']}' is not one of {list(PRODUCT_MODES)}")
    product = s.get(Product, product_id)
    if product is None:
        raise NotFoundError(f"product {product_id} does not exist; it may have been deleted")
    with _writing():
        for key, value in fields.items():
            setattr(product, key, value)
        try:
            s.flush()
        except IntegrityError as exc:
            raise StorageError(f"a product called '{fields.get('name')}' already exists; choose another "
                               f"name") from exc


def list_products(s: Session) -> list[dict[str, Any]]:
    """Every product as a dict (id, name, class_name, mode, prompt_bank_json, memory_bank_path,
    reference_paths_json, created_at)."""
    rows = s.execute(select(Product).order_by(Product.name)).scalars()
    return [
        {"id": p.id, "name": p.name, "class_name": p.class_name, "mode": p.mode,
         "prompt_bank_json": p.prompt_bank_json, "memory_bank_path": p.memory_bank_path,
         "reference_paths_json": p.reference_paths_json, "created_at": p.created_at}
        for p in rows
    ]


# ---- inspections ---------------------------------------------------------------------------------


def add_inspection(s: Session, record: InspectionRecord) -> int:
    """Store one inspection; returns its id."""
    return add_inspections(s, [record])[0]


def add_inspections(s: Session, records: Sequence[InspectionRecord]) -> list[int]:
    """Store many inspections in one statement (a folder batch); returns their ids in order."""
    if not records:
        return []
    values = [_values(r) for r in records]
    stmt = insert(Inspection).returning(Inspection.id, sort_by_parameter_order=True)
    with _writing():
        return list(s.scalars(stmt, values))


def is_batch_source(source: str) -> bool:
    return source.startswith(BATCH_SOURCES)


def add_batch_inspection(s: Session, record: InspectionRecord) -> tuple[int, bool]:
    """Store an inspection from a batch source unless that image is already stored from it.

    Returns (inspection id, True) when stored, or (the id stored earlier, False) when another run got
    there first. The claim's primary key decides, so two runs at once cannot both store the image.
    """
    if not is_batch_source(record.source):
        return add_inspection(s, record), True
    with _writing():
        inspection_id = add_inspection(s, record)
        dialect = s.get_bind().dialect.name
        values = {"source": record.source, "image_sha256": record.image_sha256, "inspection_id": inspection_id}
        if dialect in ("sqlite", "postgresql"):
            dialect_insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
            claimed = s.execute(dialect_insert(BatchClaim).values(**values).on_conflict_do_nothing()).rowcount
        else:
            try:
                with s.begin_nested():
                    s.execute(insert(BatchClaim).values(**values))
                claimed = 1
            except IntegrityError:
                claimed = 0
        if claimed:
            return inspection_id, True
        s.execute(delete(Inspection).where(Inspection.id == inspection_id))
        earlier = s.scalar(select(BatchClaim.inspection_id).where(BatchClaim.source == record.source,
                                                                  BatchClaim.image_sha256 == record.image_sha256))
        return int(earlier), False


def has_inspection(s: Session, record: InspectionRecord) -> bool:
    """Whether this very record (same source, image and time) is stored already (a replayed journal)."""
    return s.scalar(select(Inspection.id).where(Inspection.source == record.source,
                                                Inspection.image_sha256 == record.image_sha256,
                                                Inspection.created_at == record.created_at).limit(1)) is not None


def is_inspected(s: Session, source: str, image_sha256: str) -> bool:
    """Whether an image with this content is already stored from the batch source."""
    return s.scalar(select(BatchClaim.inspection_id).where(BatchClaim.source == source,
                                                            BatchClaim.image_sha256 == image_sha256)) is not None


def get_inspection(s: Session, inspection_id: int) -> InspectionRow | None:
    row = s.execute(_select_rows().where(Inspection.id == inspection_id)).first()
    return _row(*row) if row is not None else None


def delete_inspection(s: Session, inspection_id: int) -> bool:
    """Delete an inspection and its conversation (its image and mask files stay); False if absent."""
    with _writing():
        result = s.execute(delete(Inspection).where(Inspection.id == inspection_id))
    return bool(result.rowcount)


def set_operator_decision(s: Session, inspection_id: int, decision: str | None, operator: str | None = None,
                          note: str | None = None) -> None:
    """Record what the operator decided ("confirmed", "overridden_good", "overridden_defective"; None undoes it)."""
    if decision is not None and decision not in DECISIONS:
        raise ValueError(f"operator decision '{decision}' is not one of {list(DECISIONS)}")
    values: dict[str, Any] = {
        "operator_decision": decision,
        "operator": operator if decision is not None else None,
        "decided_at": utc_now() if decision is not None else None,
    }
    if note is not None:
        values["note"] = note
    with _writing():
        result = s.execute(update(Inspection).where(Inspection.id == inspection_id).values(**values))
    if not result.rowcount:
        raise NotFoundError(f"inspection {inspection_id} does not exist; it may have been deleted")


def query_inspections(s: Session, flt: InspectionFilter, *, offset: int = 0, limit: int = 100,
                      order_by: str = "created_at", descending: bool = True) -> list[InspectionRow]:
    """One page of the inspections `flt` selects, sorted by `order_by` (see ORDER_COLUMNS)."""
    stmt = _ordered(_filtered(_select_rows(), flt), order_by, descending).offset(offset).limit(limit)
    return [_row(inspection, name) for inspection, name in s.execute(stmt)]


def iter_inspections(s: Session, flt: InspectionFilter, *, order_by: str = "created_at",
                     descending: bool = False, limit: int | None = None,
                     chunk: int = 1000) -> Iterator[InspectionRow]:
    """Every inspection `flt` selects, fetched `chunk` rows at a time (for exports)."""
    stmt = _ordered(_filtered(_select_rows(), flt), order_by, descending).limit(limit)
    for inspection, name in s.execute(stmt.execution_options(yield_per=chunk)):
        yield _row(inspection, name)


def count_inspections(s: Session, flt: InspectionFilter) -> int:
    return s.scalar(_filtered(select(func.count(Inspection.id)), flt)) or 0


def summarize_inspections(s: Session, flt: InspectionFilter) -> dict[str, int]:
    """Counts of the selected inspections: total, defective and good (the model's verdicts), per
    operator decision, and "final_defective": defective once the operator's overrides are applied."""
    defective = func.sum(case((Inspection.verdict == "defective", 1), else_=0))
    final = func.sum(case((Inspection.operator_decision == "overridden_defective", 1),
                          (Inspection.operator_decision == "overridden_good", 0),
                          (Inspection.verdict == "defective", 1), else_=0))
    decided = [func.sum(case((Inspection.operator_decision == d, 1), else_=0)) for d in DECISIONS]
    row = s.execute(_filtered(select(func.count(Inspection.id), defective, final, *decided), flt)).one()
    total = row[0] or 0
    summary = {"total": total, "defective": row[1] or 0, "good": total - (row[1] or 0), "final_defective": row[2] or 0}
    summary.update({d: n or 0 for d, n in zip(DECISIONS, row[3:], strict=True)})
    summary[UNDECIDED] = total - sum(summary[d] for d in DECISIONS)
    return summary


def defect_rate_trend(s: Session, flt: InspectionFilter, bucket: str = "day") -> list[tuple[datetime, int, int]]:
    """(bucket start in UTC, inspections, defective ones) per day or hour that has any inspection, oldest first."""
    if bucket not in TREND_BUCKETS:
        raise ValueError(f"trend bucket '{bucket}' is not one of {list(TREND_BUCKETS)}")
    key = trend_bucket(s.get_bind().dialect.name, bucket)
    if key is None:
        return _trend_in_python(s, flt, bucket)
    defective = func.sum(case((Inspection.verdict == "defective", 1), else_=0))
    key = key.label("bucket")
    stmt = _filtered(select(key, func.count(Inspection.id), defective), flt).group_by(key).order_by(key)
    return [(_as_utc(start), int(total), int(bad or 0)) for start, total, bad in s.execute(stmt)]


def trend_bucket(dialect: str, bucket: str) -> ColumnElement[Any] | None:
    """SQL for the start of the UTC day or hour of `created_at`, or None where the dialect has no known form.

    Literals rather than bound parameters, so the GROUP BY expression is textually the selected one
    (PostgreSQL requires that).
    """
    if bucket not in TREND_BUCKETS:
        raise ValueError(f"trend bucket '{bucket}' is not one of {list(TREND_BUCKETS)}")
    if dialect == "sqlite":
        # created_at is stored as naive UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff'
        fmt = "'%Y-%m-%d 00:00:00'" if bucket == "day" else "'%Y-%m-%d %H:00:00'"
        return func.strftime(literal_column(fmt), Inspection.created_at)
    if dialect == "postgresql":
        # timestamptz -> UTC wall time first, so buckets do not follow the session's time zone
        return func.date_trunc(literal_column(f"'{bucket}'"), func.timezone(literal_column("'UTC'"),
                                                                            Inspection.created_at))
    return None


def processed_image_hashes(s: Session, source: str) -> set[str]:
    """The sha256 of every image already inspected from `source` (to resume an interrupted folder batch)."""
    return set(s.scalars(select(Inspection.image_sha256).where(Inspection.source == source).distinct()))


def latest_inspections_of(s: Session, image_sha256s: Iterable[str], limit: int,
                          chunk: int = 500) -> list[tuple[int, str]]:
    """(id, sha256) of the most recent inspection of each image (by content, from any source), newest
    first, at most `limit`: what a reopened folder shows of its images inspected before.

    Only ids, hashes and times are read here (in `chunk`-sized IN lists, which every database takes), so
    that a caller reads the few full rows it shows one by one, and one damaged row spoils only itself.
    """
    wanted = sorted(set(image_sha256s))
    latest: list[tuple[datetime, int, str]] = []
    for start in range(0, len(wanted), chunk):
        # the newest row of each image, picked by the database (one row per image comes back)
        rank = func.row_number().over(partition_by=Inspection.image_sha256,
                                      order_by=(Inspection.created_at.desc(), Inspection.id.desc())).label("rank")
        ranked = (select(Inspection.id, Inspection.image_sha256, Inspection.created_at, rank)
                  .where(Inspection.image_sha256.in_(wanted[start:start + chunk])).subquery())
        stmt = select(ranked.c.id, ranked.c.image_sha256, ranked.c.created_at).where(ranked.c.rank == 1)
        latest += [(_as_utc(created_at), inspection_id, sha) for inspection_id, sha, created_at in s.execute(stmt)]
    latest.sort(reverse=True)
    return [(inspection_id, sha) for _, inspection_id, sha in latest[:max(limit, 0)]]


# ---- conversations -------------------------------------------------------------------------------


def add_message(s: Session, inspection_id: int, role: str, content: str) -> int:
    """Append a message to the inspection's conversation (started on the first message); returns its id."""
    if role not in ROLES:
        raise ValueError(f"message role '{role}' is not one of {list(ROLES)}")
    with _writing():
        conversation_id = s.scalar(select(Conversation.id).where(Conversation.inspection_id == inspection_id))
        if conversation_id is None:
            if s.get(Inspection, inspection_id) is None:
                raise NotFoundError(f"inspection {inspection_id} does not exist; it may have been deleted")
            conversation = Conversation(inspection_id=inspection_id, created_at=utc_now())
            s.add(conversation)
            s.flush()
            conversation_id = conversation.id
        last = s.scalar(select(func.max(Message.position)).where(Message.conversation_id == conversation_id))
        message = Message(conversation_id=conversation_id, role=role, content=content, created_at=utc_now(),
                          position=0 if last is None else last + 1)
        s.add(message)
        s.flush()
        return message.id


def get_conversation(s: Session, inspection_id: int) -> list[MessageRow]:
    """The inspection's messages in the order they were added (empty if none)."""
    stmt = (select(Message.role, Message.content, Message.created_at)
            .join(Conversation, Message.conversation_id == Conversation.id)
            .where(Conversation.inspection_id == inspection_id)
            .order_by(Message.position))
    return [MessageRow(role, content, created_at) for role, content, created_at in s.execute(stmt)]


# ---- internals -----------------------------------------------------------------------------------


def _values(r: InspectionRecord) -> dict[str, Any]:
    if r.verdict not in VERDICTS:
        raise ValueError(f"verdict '{r.verdict}' is not one of {list(VERDICTS)}")
    if r.operator_decision is not None and r.operator_decision not in DECISIONS:
        raise ValueError(f"operator decision '{r.operator_decision}' is not one of {list(DECISIONS)}")
    return {
        "created_at": r.created_at, "product_id": r.product_id, "source": r.source, "image_path": r.image_path,
        "image_sha256": r.image_sha256, "width": r.width, "height": r.height, "score": r.score,
        "score_top1": r.score_top1, "p_yes": r.p_yes, "verdict": r.verdict, "answer": r.answer,
        "position": r.position, "defect_types_json": json.dumps([[n, p] for n, p in r.defect_types]),
        "mask_path": r.mask_path, "model_id": r.model_id, "mode": r.mode, "latency_ms": r.latency_ms,
        "operator_decision": r.operator_decision, "operator": r.operator, "decided_at": r.decided_at,
        "note": r.note, "file_name": r.file_name, "reference_name": r.reference_name,
        "reference_path": r.reference_path, "reference_similarity": r.reference_similarity,
    }


def _row(i: Inspection, product_name: str | None) -> InspectionRow:
    return InspectionRow(
        id=i.id, created_at=i.created_at, product_id=i.product_id, product_name=product_name, source=i.source,
        image_path=i.image_path, image_sha256=i.image_sha256, width=i.width, height=i.height, score=i.score,
        score_top1=i.score_top1, p_yes=i.p_yes, verdict=i.verdict, answer=i.answer, position=i.position,
        defect_types=[(str(n), float(p)) for n, p in json.loads(i.defect_types_json or "[]")],
        mask_path=i.mask_path, model_id=i.model_id, mode=i.mode, latency_ms=i.latency_ms,
        operator_decision=i.operator_decision, operator=i.operator, decided_at=i.decided_at, note=i.note,
        file_name=i.file_name, reference_name=i.reference_name, reference_path=i.reference_path,
        reference_similarity=i.reference_similarity,
    )


def _select_rows() -> Select[Any]:
    return select(Inspection, Product.name).outerjoin(Product, Inspection.product_id == Product.id)


def _filtered(stmt: Select[Any], flt: InspectionFilter) -> Select[Any]:
    return stmt.where(*_conditions(flt))


def _conditions(flt: InspectionFilter) -> Iterable[ColumnElement[bool]]:
    if flt.start is not None:
        yield Inspection.created_at >= flt.start
    if flt.end is not None:
        yield Inspection.created_at < flt.end
    if flt.product_id is not None:
        yield Inspection.product_id == flt.product_id
    if flt.verdict is not None:
        if flt.verdict not in VERDICTS:
            raise ValueError(f"verdict filter '{flt.verdict}' is not one of {list(VERDICTS)}")
        yield Inspection.verdict == flt.verdict
    if flt.decision is not None:
        if flt.decision == UNDECIDED:
            yield Inspection.operator_decision.is_(None)
        elif flt.decision in DECISIONS:
            yield Inspection.operator_decision == flt.decision
        else:
            raise ValueError(f"decision filter '{flt.decision}' is not one of {[*DECISIONS, UNDECIDED]}")
    text = (flt.text or "").strip()
    if text:
        columns = (Inspection.file_name, Inspection.answer, Inspection.image_path, Inspection.position,
                   Inspection.defect_types_json, Inspection.note)
        yield or_(*(c.icontains(text, autoescape=True) for c in columns))


def _ordered(stmt: Select[Any], order_by: str, descending: bool) -> Select[Any]:
    if order_by not in ORDER_COLUMNS:
        raise ValueError(f"cannot sort by '{order_by}'; choose one of {list(ORDER_COLUMNS)}")
    column = ORDER_COLUMNS[order_by]
    key = column.desc() if descending else column.asc()
    if order_by in ("product", "operator_decision"):
        key = key.nulls_last()  # the same on SQLite and PostgreSQL, whose defaults differ
    tiebreak = Inspection.id.desc() if descending else Inspection.id.asc()  # stable pages
    return stmt.order_by(key, tiebreak)


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _trend_in_python(s: Session, flt: InspectionFilter, bucket: str) -> list[tuple[datetime, int, int]]:
    # Other dialects: group in Python (slower, but correct) rather than guess their date functions.
    counts: dict[datetime, list[int]] = {}
    for created_at, verdict in s.execute(_filtered(select(Inspection.created_at, Inspection.verdict), flt)):
        start = created_at.replace(minute=0, second=0, microsecond=0)
        if bucket == "day":
            start = start.replace(hour=0)
        total_bad = counts.setdefault(start, [0, 0])
        total_bad[0] += 1
        total_bad[1] += verdict == "defective"
    return [(start, total, bad) for start, (total, bad) in sorted(counts.items())]
