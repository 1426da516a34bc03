"""Attendance: spans of real media presence per participant and agenda item, as they happen."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select

from .db import AsyncSession
from .models import Attendance, User

__all__ = ["open_span", "close_spans", "switch_item", "spans_of"]


async def open_span(
    session: AsyncSession,
    session_id: int,
    user: User,
    agenda_item_id: int | None,
    at: datetime,
    *,
    left: datetime | None = None,
) -> Attendance:
    """A span from ``at``; ``left`` closes it at once (recording a past session)."""
    assert user.id is not None
    span = Attendance(
        session_id=session_id,
        user_id=user.id,
        agenda_item_id=agenda_item_id,
        specialty=user.specialty,
        institution_id=user.institution_id,
        joined_at=at,
        left_at=left,
    )
    session.add(span)
    await session.flush()
    return span


async def close_spans(session: AsyncSession, session_id: int, user_id: int, at: datetime) -> int:
    rows = list(
        await session.exec(
            select(Attendance).where(
                Attendance.session_id == session_id,
                Attendance.user_id == user_id,
                col(Attendance.left_at).is_(None),
            )
        )
    )
    for span in rows:
        span.left_at = at
        session.add(span)
    await session.flush()
    return len(rows)


async def switch_item(
    session: AsyncSession, session_id: int, users: list[User], item_id: int | None, at: datetime
) -> None:
    """The agenda moved: close everyone's open span and open one on the new item."""
    for user in users:
        assert user.id is not None
        await close_spans(session, session_id, user.id, at)
        await open_span(session, session_id, user, item_id, at)


async def spans_of(session: AsyncSession, session_id: int) -> list[Attendance]:
    rows = await session.exec(
        select(Attendance).where(Attendance.session_id == session_id).order_by(col(Attendance.id))
    )
    return list(rows)
