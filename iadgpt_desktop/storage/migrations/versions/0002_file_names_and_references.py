"""Each inspection keeps the name of the file it came from; each product its reference images.

`inspections.file_name` is what the operator knows a part by ("pitting_124.png"): the stored image
is content-addressed, so before this revision the name was lost. Rows stored earlier keep NULL (the
name is not recoverable from the hash). `products.reference_paths_json` is the JSON list of the
reference images a memory bank was (or will be) built from, so the list survives a restart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inspections", sa.Column("file_name", sa.String(1024), nullable=True))
    op.create_index(op.f("ix_inspections_file_name"), "inspections", ["file_name"])
    op.add_column("products", sa.Column("reference_paths_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_column("reference_paths_json")
    op.drop_index(op.f("ix_inspections_file_name"), table_name="inspections")
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("file_name")
