"""revoked tokens and per-user token generations

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07 03:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import sqlmodel
import server.models


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_Str = sqlmodel.sql.sqltypes.AutoString
_Instant = server.models.UTCDateTime


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite rebuilding the user table would trip the keys pointing at it.
    op.add_column(
        "user", sa.Column("token_generation", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "revoked_token",
        sa.Column("jti", _Str(length=64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("expires_at", _Instant(timezone=True), nullable=False),
    )
    op.create_index("ix_revoked_token_expires_at", "revoked_token", ["expires_at"])


def downgrade() -> None:
    op.drop_table("revoked_token")
    with op.batch_alter_table("user") as batch:
        batch.drop_column("token_generation")
