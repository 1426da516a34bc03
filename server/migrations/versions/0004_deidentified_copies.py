"""deidentified copies

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:27:15.752488
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import sqlmodel
import server.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, no batch table copy: copying dicom_series would trip the foreign keys
    # that point at it. SQLite cannot add a constraint to an existing table, so there the
    # column goes without its foreign key (the application keeps it consistent).
    sqlite = op.get_bind().dialect.name == "sqlite"
    references = [] if sqlite else [sa.ForeignKey("dicom_series.id")]
    op.add_column(
        "dicom_series", sa.Column("source_id", sa.Integer(), *references, nullable=True)
    )
    op.add_column(
        "imaging_study",
        sa.Column("deidentified", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("imaging_study", "deidentified")
    op.drop_column("dicom_series", "source_id")
