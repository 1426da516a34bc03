"""consensus notes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 17:10:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import sqlmodel
import server.models


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_Str = sqlmodel.sql.sqltypes.AutoString
_Instant = server.models.UTCDateTime


def upgrade() -> None:
    op.add_column("board", sa.Column("note_template", _Str(length=32), nullable=True))
    op.create_table(
        "note",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("case.id"), nullable=False, unique=True),
        sa.Column("template", _Str(length=32), nullable=False),
        sa.Column("status", _Str(length=16), nullable=False),
        sa.Column("amendment_reason_enc", _Str(), nullable=True),
        sa.Column("created_at", _Instant(timezone=True), nullable=False),
        sa.Column("updated_at", _Instant(timezone=True), nullable=False),
    )
    op.create_table(
        "note_update",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("note_id", sa.Integer(), sa.ForeignKey("note.id"), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("author_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("at", _Instant(timezone=True), nullable=False),
    )
    op.create_index("ix_note_update_note_id", "note_update", ["note_id"])
    op.create_table(
        "agreed_plan",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hash", _Str(length=80), nullable=False),
        sa.Column("previous_hash", _Str(length=80), nullable=True),
        sa.Column("kid", _Str(length=32), nullable=False),
        sa.Column("document_enc", sa.LargeBinary(), nullable=False),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("board_session.id"), nullable=True),
        sa.Column("signed_by", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("signed_at", _Instant(timezone=True), nullable=False),
        sa.UniqueConstraint("case_id", "version"),
    )
    op.create_index("ix_agreed_plan_case_id", "agreed_plan", ["case_id"])
    op.create_table(
        "plan_followup",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("kind", _Str(length=32), nullable=False),
        sa.Column("status", _Str(length=16), nullable=False),
        sa.Column("reason", _Str(length=32), nullable=True),
        sa.Column("comment_enc", _Str(), nullable=True),
        sa.Column("updated_by", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("updated_at", _Instant(timezone=True), nullable=False),
        sa.UniqueConstraint("case_id", "rank"),
    )
    op.create_index("ix_plan_followup_case_id", "plan_followup", ["case_id"])


def downgrade() -> None:
    op.drop_table("plan_followup")
    op.drop_table("agreed_plan")
    op.drop_table("note_update")
    op.drop_table("note")
    op.drop_column("board", "note_template")
