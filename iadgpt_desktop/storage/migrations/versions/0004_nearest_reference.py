"""Each few-shot inspection keeps the good reference it was compared with, and how similar it was.

`inspections.reference_name` is the reference's file name as the product's reference set records it
("good_030.png"), `reference_path` the file it was read from (None for an image given as an array),
`reference_similarity` the cosine similarity of the two global embeddings. Rows stored earlier, and
inspections without a nearest reference (trained mode, an old bank), keep NULL in all three.

Revision ID: 0004_nearest_reference
Revises: 0003_batch_claims
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_nearest_reference"
down_revision: str | None = "0003_batch_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("reference_name", sa.String(1024), nullable=True))
    op.add_column("inspections", sa.Column("reference_path", sa.String(1024), nullable=True))
    op.add_column("inspections", sa.Column("reference_similarity", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("reference_similarity")
        batch.drop_column("reference_path")
        batch.drop_column("reference_name")
