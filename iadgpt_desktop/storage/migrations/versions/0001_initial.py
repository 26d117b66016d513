"""Initial schema: products, inspections, conversations, messages.

Written by hand to match `iadgpt_desktop.storage.models` at the first release. Revisions never import
the models: they describe the schema as it was when they were written.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DECISIONS = "('confirmed', 'overridden_good', 'overridden_defective')"


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("class_name", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("prompt_bank_json", sa.Text(), nullable=True),
        sa.Column("memory_bank_path", sa.String(1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("name", name=op.f("uq_products_name")),
    )
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("image_path", sa.String(1024), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("score_top1", sa.Float(), nullable=False),
        sa.Column("p_yes", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("position", sa.String(255), nullable=True),
        sa.Column("defect_types_json", sa.Text(), nullable=False),
        sa.Column("mask_path", sa.String(1024), nullable=True),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("operator_decision", sa.String(32), nullable=True),
        sa.Column("operator", sa.String(255), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspections")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="SET NULL",
                                name=op.f("fk_inspections_product_id_products")),
        sa.CheckConstraint("verdict IN ('defective', 'good')", name=op.f("ck_inspections_verdict")),
        sa.CheckConstraint(f"operator_decision IS NULL OR operator_decision IN {DECISIONS}",
                           name=op.f("ck_inspections_operator_decision")),
    )
    op.create_index("ix_inspections_created_at_verdict", "inspections", ["created_at", "verdict"])
    op.create_index("ix_inspections_product_id_created_at", "inspections", ["product_id", "created_at"])
    op.create_index(op.f("ix_inspections_image_sha256"), "inspections", ["image_sha256"])
    op.create_index(op.f("ix_inspections_verdict"), "inspections", ["verdict"])
    op.create_index(op.f("ix_inspections_operator_decision"), "inspections", ["operator_decision"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], ondelete="CASCADE",
                                name=op.f("fk_conversations_inspection_id_inspections")),
        sa.UniqueConstraint("inspection_id", name=op.f("uq_conversations_inspection_id")),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name=op.f("fk_messages_conversation_id_conversations")),
        sa.UniqueConstraint("conversation_id", "position", name=op.f("uq_messages_conversation_id_position")),
        sa.CheckConstraint("role IN ('user', 'assistant')", name=op.f("ck_messages_role")),
    )


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("conversations")
    op.drop_index(op.f("ix_inspections_operator_decision"), table_name="inspections")
    op.drop_index(op.f("ix_inspections_verdict"), table_name="inspections")
    op.drop_index(op.f("ix_inspections_image_sha256"), table_name="inspections")
    op.drop_index("ix_inspections_product_id_created_at", table_name="inspections")
    op.drop_index("ix_inspections_created_at_verdict", table_name="inspections")
    op.drop_table("inspections")
    op.drop_table("products")
