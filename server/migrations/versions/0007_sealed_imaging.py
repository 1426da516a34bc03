"""sealed imaging: stored DICOM files and their DICOM JSON encrypted at rest

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 03:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_Str = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    # Instances stored before keep file_key NULL and their plain dicom_json until the server
    # seals them at start (DicomStore.seal_plain).
    op.add_column("dicom_instance", sa.Column("file_key", _Str(length=32), nullable=True))
    op.add_column("dicom_instance", sa.Column("dicom_enc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dicom_instance") as batch_op:
        batch_op.drop_column("dicom_enc")
        batch_op.drop_column("file_key")
