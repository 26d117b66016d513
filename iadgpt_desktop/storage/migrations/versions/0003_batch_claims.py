"""Batch claims: at most one stored inspection per (batch source, image content).

A primary key on (source, image_sha256) that concurrent batch runs cannot both pass. Existing rows
get a claim for their oldest inspection; duplicates stored by earlier versions are kept as they are
(nothing is deleted), only new ones are prevented.

Revision ID: 0003_batch_claims
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_batch_claims"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batch_claims",
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("inspection_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "image_sha256", name=op.f("pk_batch_claims")),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], ondelete="CASCADE",
                                name=op.f("fk_batch_claims_inspection_id_inspections")),
    )
    op.create_index(op.f("ix_batch_claims_inspection_id"), "batch_claims", ["inspection_id"])
    op.execute(
        "INSERT INTO batch_claims (source, image_sha256, inspection_id) "
        "SELECT source, image_sha256, MIN(id) FROM inspections "
        "WHERE source LIKE 'cli:%' OR source LIKE 'folder:%' GROUP BY source, image_sha256"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_batch_claims_inspection_id"), table_name="batch_claims")
    op.drop_table("batch_claims")
