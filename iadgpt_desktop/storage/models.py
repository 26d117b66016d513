"""The database schema: products, inspections, and the conversations held about them.

Schema changes go through a new Alembic revision in `migrations/versions/`; a test checks that the
migrated schema equals these models.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from iadgpt_desktop.storage.records import utc_now

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored as UTC and always read back timezone-aware.

    SQLite has no time zones, so it stores naive UTC text (which then sorts and compares correctly);
    PostgreSQL stores `timestamp with time zone`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # A naive value is taken to be UTC already.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    class_name: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(16), default="trained")  # "trained" | "few-shot"
    prompt_bank_json: Mapped[str | None] = mapped_column(Text)
    memory_bank_path: Mapped[str | None] = mapped_column(String(1024))
    reference_paths_json: Mapped[str | None] = mapped_column(Text)  # JSON list of reference image paths
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class Inspection(Base):
    __tablename__ = "inspections"
    # created_at and product_id are indexed as the leading columns of these two composites; separate
    # single-column indexes would only slow inserts down.
    __table_args__ = (
        Index("ix_inspections_created_at_verdict", "created_at", "verdict"),
        Index("ix_inspections_product_id_created_at", "product_id", "created_at"),
        CheckConstraint("verdict IN ('defective', 'good')", name="verdict"),
        CheckConstraint(
            "operator_decision IS NULL OR operator_decision IN "
            "('confirmed', 'overridden_good', 'overridden_defective')",
            name="operator_decision",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(1024))
    image_path: Mapped[str] = mapped_column(String(1024))
    file_name: Mapped[str | None] = mapped_column(String(1024), index=True)  # "pitting_124.png"; None: unknown
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    score_top1: Mapped[float] = mapped_column(Float)
    p_yes: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(16), index=True)
    answer: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[str | None] = mapped_column(String(255))
    defect_types_json: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of [name, prob]
    mask_path: Mapped[str | None] = mapped_column(String(1024))
    model_id: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(32))
    latency_ms: Mapped[float] = mapped_column(Float)
    operator_decision: Mapped[str | None] = mapped_column(String(32), index=True)
    operator: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column()
    note: Mapped[str | None] = mapped_column(Text)
    # Few-shot: the good reference most like the part, as the product's reference set records it; None
    # for other modes, an old bank without a reference index, and rows stored before revision 0004.
    reference_name: Mapped[str | None] = mapped_column(String(1024))  # "good_030.png"
    reference_path: Mapped[str | None] = mapped_column(String(1024))  # the file it was read from
    reference_similarity: Mapped[float | None] = mapped_column(Float)  # cosine similarity, in [-1, 1]

    product: Mapped[Product | None] = relationship()
    conversation: Mapped[Conversation | None] = relationship(
        back_populates="inspection", cascade="all, delete-orphan", passive_deletes=True
    )


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    inspection: Mapped[Inspection] = relationship(back_populates="conversation")
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Message.position",
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "position"),
        CheckConstraint("role IN ('user', 'assistant')", name="role"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    position: Mapped[int] = mapped_column(Integer)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


class BatchClaim(Base):
    """An image (by content) already stored from a batch source ("cli:..." or "folder:...").

    Its primary key makes "inspected once per batch source" a rule the database enforces, so two
    batch runs over the same folder at the same time cannot both store an image. Deleting the
    inspection deletes its claim, so the image may be inspected again.
    """

    __tablename__ = "batch_claims"

    source: Mapped[str] = mapped_column(String(1024), primary_key=True)
    image_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
