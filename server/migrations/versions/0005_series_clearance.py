"""series clearance

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:12:40.118204
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import sqlmodel
import server.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, as in 0004: a batch copy of dicom_series would trip the foreign keys
    # that point at it, and SQLite cannot add a constraint to an existing table.
    sqlite = op.get_bind().dialect.name == "sqlite"
    references = [] if sqlite else [sa.ForeignKey("user.id")]
    op.add_column(
        "dicom_series",
        sa.Column("cleared_at", server.models.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "dicom_series", sa.Column("cleared_by", sa.Integer(), *references, nullable=True)
    )
    op.add_column(
        "dicom_series",
        sa.Column(
            "clearance_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True
        ),
    )


def downgrade() -> None:
    op.drop_column("dicom_series", "clearance_reason")
    op.drop_column("dicom_series", "cleared_by")
    op.drop_column("dicom_series", "cleared_at")
